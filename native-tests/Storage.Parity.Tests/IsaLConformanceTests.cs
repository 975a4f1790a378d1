using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Storage.Parity.Interop;

namespace Storage.Parity.Tests;

/// <summary>Byte-for-byte agreement with Intel ISA-L, through every ISA-L code path this CPU runs.</summary>
public unsafe class IsaLConformanceTests
{
    private static readonly string[] PathNames = ["", "avx2", "avx512"];

    private static IEnumerable<IsaL.Functions> Paths(IsaL isal) =>
        PathNames.Select(isal.TryVariant).Where(f => f.HasValue).Select(f => f!.Value);

    /// <summary>A copy of the first <paramref name="dataRows"/> rows into a fresh buffer with <paramref name="rows"/> rows.</summary>
    private static AlignedRows CopyData(AlignedRows source, int dataRows, int rows)
    {
        var copy = new AlignedRows(rows, source.Width, 0);
        for (int i = 0; i < dataRows; i++)
            new Span<byte>(source[i], source.Width).CopyTo(new Span<byte>(copy[i], source.Width));
        return copy;
    }

    [Fact]
    public void Field_multiplication_matches_gf_mul()
    {
        var isal = Requires.IsaL();
        for (int a = 0; a < 256; a++)
            for (int b = 0; b < 256; b++)
                Assert.Equal(isal.GfMul((byte)a, (byte)b), Gf256.Mul((byte)a, (byte)b));
    }

    [Theory]
    [InlineData(4, 2)]
    [InlineData(8, 2)]
    [InlineData(10, 4)]
    [InlineData(16, 4)]
    [InlineData(20, 12)]
    [InlineData(200, 55)]
    public void Generator_matches_gf_gen_cauchy1_matrix(int k, int m)
    {
        var isal = Requires.IsaL();
        var expected = new byte[(k + m) * k];
        fixed (byte* a = expected)
            isal.GfGenCauchy1Matrix(a, k + m, k);
        Assert.Equal(expected, GfMatrix.Cauchy(k + m, k));
    }

    [Property(MaxTest = 60)]
    public Property Xor_matches_xor_gen()
    {
        var isal = Requires.IsaL();
        return Prop.ForAll(Shapes(32, 1, 1, minK: 2), c =>
        {
            void** array = stackalloc void*[c.K + 1];
            foreach (var path in Paths(isal))
                foreach (var set in KernelSets.Available)
                {
                    using var reference = new AlignedRows(c.K + 1, c.Length, c.Seed);
                    for (int i = 0; i <= c.K; i++)
                        array[i] = reference[i];
                    Assert.Equal(0, path.XorGen(c.K + 1, c.Length, array));
                    using var ours = CopyData(reference, c.K, c.K + 1);
                    new Raid5Codec(set).ComputeParity(ours.Span);
                    Assert.True(reference.RowCopy(c.K).AsSpan().SequenceEqual(ours.RowCopy(c.K)), $"{set.Name} vs {path.Name} {c}");
                }
        });
    }

    [Property(MaxTest = 60)]
    public Property PQ_matches_pq_gen()
    {
        var isal = Requires.IsaL();
        return Prop.ForAll(Shapes(32, 2, 2, minK: 2), c =>
        {
            void** array = stackalloc void*[c.K + 2];
            foreach (var path in Paths(isal))
                foreach (var set in KernelSets.Available)
                {
                    using var reference = new AlignedRows(c.K + 2, c.Length, c.Seed);
                    for (int i = 0; i < c.K + 2; i++)
                        array[i] = reference[i];
                    Assert.Equal(0, path.PqGen(c.K + 2, c.Length, array));
                    using var ours = CopyData(reference, c.K, c.K + 2);
                    new Raid6Codec(set).ComputeParity(ours.Span);
                    Assert.True(reference.RowCopy(c.K).AsSpan().SequenceEqual(ours.RowCopy(c.K)), $"P: {set.Name} vs {path.Name} {c}");
                    Assert.True(reference.RowCopy(c.K + 1).AsSpan().SequenceEqual(ours.RowCopy(c.K + 1)), $"Q: {set.Name} vs {path.Name} {c}");
                }
        });
    }

    [Property(MaxTest = 60)]
    public Property Reed_Solomon_encode_and_decode_match_ec_encode_data()
    {
        var isal = Requires.IsaL();
        return Prop.ForAll(Shapes(24, 1, 8), c =>
        {
            int k = c.K, m = c.M, n = k + m;
            var generator = GfMatrix.Cauchy(n, k);
            var tables = new byte[32 * k * n];
            byte** data = stackalloc byte*[n];
            byte** coding = stackalloc byte*[n];
            foreach (var path in Paths(isal))
                foreach (var set in KernelSets.Available)
                {
                    using var reference = new AlignedRows(n, c.Length, c.Seed);
                    using var ours = new AlignedRows(n, c.Length, c.Seed);
                    for (int i = 0; i < k; i++)
                        data[i] = reference[i];
                    for (int r = 0; r < m; r++)
                        coding[r] = reference[k + r];
                    fixed (byte* g = generator)
                    fixed (byte* t = tables)
                    {
                        isal.EcInitTables(k, m, g + k * k, t);
                        path.EcEncodeData(c.Length, k, m, t, data, coding);
                    }
                    var codec = new ReedSolomonCodec(k, m, set);
                    codec.Encode(ours.Span);
                    for (int r = 0; r < n; r++)
                        Assert.True(reference.RowCopy(r).AsSpan().SequenceEqual(ours.RowCopy(r)), $"encode row {r}: {set.Name} vs {path.Name} {c}");

                    // ISA-L's decode recipe: invert the first k surviving rows, ec_encode_data the lost data rows from them.
                    var rng = new Random(c.Seed);
                    int[] lost = Enumerable.Range(0, k).OrderBy(_ => rng.Next()).Take(Math.Min(m, k)).Order().ToArray();
                    int[] survivors = Enumerable.Range(0, n).Where(r => !lost.Contains(r)).Take(k).ToArray();
                    var sub = new byte[k * k];
                    for (int i = 0; i < k; i++)
                        generator.AsSpan(survivors[i] * k, k).CopyTo(sub.AsSpan(i * k));
                    var inverse = new byte[k * k];
                    var decode = new byte[lost.Length * k];
                    fixed (byte* s = sub)
                    fixed (byte* inv = inverse)
                        Assert.Equal(0, isal.GfInvertMatrix(s, inv, k));
                    for (int o = 0; o < lost.Length; o++)
                        inverse.AsSpan(lost[o] * k, k).CopyTo(decode.AsSpan(o * k));
                    using var recovered = new AlignedRows(lost.Length, c.Length, 0);
                    for (int i = 0; i < k; i++)
                        data[i] = reference[survivors[i]];
                    for (int o = 0; o < lost.Length; o++)
                        coding[o] = recovered[o];
                    fixed (byte* d = decode)
                    fixed (byte* t = tables)
                    {
                        isal.EcInitTables(k, lost.Length, d, t);
                        path.EcEncodeData(c.Length, k, lost.Length, t, data, coding);
                    }
                    foreach (int row in lost)
                        new Span<byte>(ours[row], c.Length).Clear();
                    codec.Reconstruct(ours.Span, lost);
                    for (int o = 0; o < lost.Length; o++)
                        Assert.True(recovered.RowCopy(o).AsSpan().SequenceEqual(ours.RowCopy(lost[o])), $"decode row {lost[o]}: {set.Name} vs {path.Name} {c}");
                }
        });
    }

    private sealed record Shape(int K, int M, int Length, int Seed);

    /// <summary>ISA-L refuses xor_gen and pq_gen with a single source (returns 1); those shapes start at k = 2.</summary>
    private static Arbitrary<Shape> Shapes(int maxK, int minM, int maxM, int minK = 1) =>
        (from k in Gen.Choose(minK, maxK)
         from m in Gen.Choose(minM, maxM)
         from blocks in Gen.Choose(1, 100)
         from seed in Gen.Choose(0, int.MaxValue)
         select new Shape(k, m, blocks * 64, seed)).ToArbitrary();
}
