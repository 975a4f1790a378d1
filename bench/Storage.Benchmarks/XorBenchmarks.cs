using BenchmarkDotNet.Attributes;
using Storage.Parity;

namespace Storage.Benchmarks;

/// <summary>RAID-5 parity: P = XOR of k data chunks. Data bytes = k·chunk.</summary>
public unsafe class XorBenchmarks : ParityBenchmark
{
    private StripeBuffers _buffers = null!;
    private Raid5Codec _codec = null!;

    [Params("k4", "k8", "k16")]
    public string Shape { get; set; } = "k8";

    [GlobalSetup]
    public void Setup()
    {
        ResolveImplementation();
        _buffers = new StripeBuffers(ShapeOf.DataCount(Shape) + 1, Chunk, Layout);
        _codec = Kernels is null ? null! : new Raid5Codec(Kernels);
    }

    [GlobalCleanup]
    public void Cleanup() => _buffers.Dispose();

    [Benchmark]
    public void Xor()
    {
        if (IsaLPath is { } isal)
            Check(isal.XorGen(_buffers.Rows, Chunk, (void**)_buffers.Pointers));
        else
            _codec.ComputeParity(_buffers.Stripe);
    }
}

/// <summary>RAID-6 parity: P and Q of k data chunks. Data bytes = k·chunk.</summary>
public unsafe class PqGenBenchmarks : ParityBenchmark
{
    private StripeBuffers _buffers = null!;
    private Raid6Codec _codec = null!;

    [Params("k4", "k8", "k16")]
    public string Shape { get; set; } = "k8";

    [GlobalSetup]
    public void Setup()
    {
        ResolveImplementation();
        _buffers = new StripeBuffers(ShapeOf.DataCount(Shape) + 2, Chunk, Layout);
        _codec = Kernels is null ? null! : new Raid6Codec(Kernels);
    }

    [GlobalCleanup]
    public void Cleanup() => _buffers.Dispose();

    [Benchmark]
    public void PqGen()
    {
        if (IsaLPath is { } isal)
            Check(isal.PqGen(_buffers.Rows, Chunk, (void**)_buffers.Pointers));
        else
            _codec.ComputeParity(_buffers.Stripe);
    }
}

internal static class ShapeOf
{
    /// <summary>k from "k8" or "8+2".</summary>
    public static int DataCount(string shape)
    {
        var digits = shape.TrimStart('k');
        int plus = digits.IndexOf('+', StringComparison.Ordinal);
        return int.Parse(plus < 0 ? digits : digits[..plus], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>m from "8+2".</summary>
    public static int ParityCount(string shape)
        => int.Parse(shape[(shape.IndexOf('+', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture);
}
