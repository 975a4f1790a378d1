namespace Storage.Parity;

/// <summary>
/// Whole-buffer GF(2^8) operations by a constant: <c>dst = c·src</c> and <c>dst ^= c·src</c>.
/// Lengths must be equal multiples of 64. Thread-safe and allocation-free after first use of a constant.
/// </summary>
public static unsafe class GfVector
{
    private static readonly GfCoefficients?[] ByConstant = new GfCoefficients?[256];

    /// <summary>destination = c·source. The two may be the same buffer.</summary>
    public static void Multiply(byte c, ReadOnlySpan<byte> source, Span<byte> destination, KernelSet? kernels = null)
        => Apply(c, source, destination, kernels, accumulate: false);

    /// <summary>destination ^= c·source. The two must not be the same buffer.</summary>
    public static void MultiplyAccumulate(byte c, ReadOnlySpan<byte> source, Span<byte> destination, KernelSet? kernels = null)
        => Apply(c, source, destination, kernels, accumulate: true);

    private static void Apply(byte c, ReadOnlySpan<byte> source, Span<byte> destination, KernelSet? kernels, bool accumulate)
    {
        Stripe.CheckChunkLength(source.Length, nameof(source));
        Stripe.CheckSameLength(source.Length, destination.Length, nameof(destination));
        if (source.Length == 0)
            return;
        var coefficients = ByConstant[c] ??= new GfCoefficients([c], 1, 1);
        fixed (byte* s = source)
        fixed (byte* d = destination)
        {
            (kernels ?? KernelSets.Default).DotProduct(coefficients, &s, &d, source.Length, accumulate);
        }
    }
}
