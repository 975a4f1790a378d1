using FsCheck;
using FsCheck.Fluent;

namespace Storage.Parity.Tests;

internal static class Generators
{
    /// <summary>Lengths in 64-byte steps: mostly short (tails of every vector loop), sometimes a few KiB.</summary>
    public static Gen<int> Lengths { get; } = Gen.Frequency(
        (4, Gen.Choose(0, 12).Select(n => n * 64)),
        (2, Gen.Choose(13, 80).Select(n => n * 64)),
        (1, Gen.Choose(64, 300).Select(n => n * 64)));

    public static Arbitrary<StripeCase> Stripes(int maxData, int minParity, int maxParity) =>
        (from k in Gen.Choose(1, maxData)
         from m in Gen.Choose(minParity, maxParity)
         from length in Lengths
         from seed in Gen.Choose(0, int.MaxValue)
         from misalign in Gen.Choose(0, 63)
         from pitch in Gen.Elements(0, 1, 7, 64, 4096 - 64)
         select new StripeCase(k, m, length, seed, misalign, pitch)).ToArbitrary();
}
