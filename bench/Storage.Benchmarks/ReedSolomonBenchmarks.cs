using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Storage.Parity;
using Storage.Parity.Interop;

namespace Storage.Benchmarks;

/// <summary>k+m Reed-Solomon encode with the Cauchy generator. Data bytes = k·chunk.</summary>
public unsafe class RsEncodeBenchmarks : ParityBenchmark
{
    private StripeBuffers _buffers = null!;
    private ReedSolomonCodec _codec = null!;
    private byte* _tables;
    private int _k, _m;

    [Params("8+2", "10+4", "16+4")]
    public string Shape { get; set; } = "8+2";

    [GlobalSetup]
    public void Setup()
    {
        ResolveImplementation();
        _k = ShapeOf.DataCount(Shape);
        _m = ShapeOf.ParityCount(Shape);
        _buffers = new StripeBuffers(_k + _m, Chunk, Layout);
        _codec = new ReedSolomonCodec(_k, _m, Kernels ?? KernelSets.Scalar);
        _tables = (byte*)NativeMemory.AlignedAlloc((nuint)(32 * _k * _m), 64);
        fixed (byte* g = _codec.GeneratorMatrix)
            IsaL.Instance?.EcInitTables(_k, _m, g + _k * _k, _tables);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _buffers.Dispose();
        NativeMemory.AlignedFree(_tables);
    }

    [Benchmark]
    public void Encode()
    {
        if (IsaLPath is { } isal)
            isal.EcEncodeData(Chunk, _k, _m, _tables, _buffers.Pointers, _buffers.Pointers + _k);
        else
            _codec.Encode(_buffers.Stripe);
    }
}

/// <summary>
/// Rebuild two lost data chunks (2 and 5) of an 8+2 stripe from the 8 survivors.
/// Ours includes the cached decode-plan lookup; ISA-L gets its decode tables precomputed. Data bytes = 8·chunk.
/// </summary>
public unsafe class ReconstructBenchmarks : ParityBenchmark
{
    private static readonly int[] Lost = [2, 5];
    private StripeBuffers _buffers = null!;
    private ReedSolomonCodec _codec = null!;
    private byte* _tables;
    private byte** _survivors;
    private byte** _outputs;

    [Params("8+2")]
    public string Shape { get; set; } = "8+2";

    [GlobalSetup]
    public void Setup()
    {
        ResolveImplementation();
        const int k = 8, m = 2;
        _buffers = new StripeBuffers(k + m, Chunk, Layout);
        _codec = new ReedSolomonCodec(k, m, Kernels ?? KernelSets.Scalar);
        _codec.Encode(_buffers.Stripe);

        int[] survivors = Enumerable.Range(0, k + m).Where(r => !Lost.Contains(r)).Take(k).ToArray();
        var sub = new byte[k * k];
        for (int i = 0; i < k; i++)
            _codec.GeneratorMatrix.Slice(survivors[i] * k, k).CopyTo(sub.AsSpan(i * k));
        var inverse = new byte[k * k];
        if (!GfMatrix.TryInvert(sub, inverse, k))
            throw new InvalidOperationException("singular");
        var decode = new byte[Lost.Length * k];
        for (int o = 0; o < Lost.Length; o++)
            inverse.AsSpan(Lost[o] * k, k).CopyTo(decode.AsSpan(o * k));
        _tables = (byte*)NativeMemory.AlignedAlloc((nuint)(32 * k * Lost.Length), 64);
        fixed (byte* d = decode)
            IsaL.Instance?.EcInitTables(k, Lost.Length, d, _tables);
        _survivors = (byte**)NativeMemory.Alloc((nuint)(k * sizeof(byte*)));
        _outputs = (byte**)NativeMemory.Alloc((nuint)(Lost.Length * sizeof(byte*)));
        for (int i = 0; i < k; i++)
            _survivors[i] = _buffers[survivors[i]];
        for (int o = 0; o < Lost.Length; o++)
            _outputs[o] = _buffers[Lost[o]];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _buffers.Dispose();
        NativeMemory.AlignedFree(_tables);
        NativeMemory.Free(_survivors);
        NativeMemory.Free(_outputs);
    }

    [Benchmark]
    public void Reconstruct()
    {
        if (IsaLPath is { } isal)
            isal.EcEncodeData(Chunk, 8, Lost.Length, _tables, _survivors, _outputs);
        else
            _codec.Reconstruct(_buffers.Stripe, Lost);
    }
}

/// <summary>destination = c·source for one chunk (ISA-L: gf_vect_mul, its dispatched path only). Data bytes = chunk.</summary>
public unsafe class MulBenchmarks : ParityBenchmark
{
    private const byte Constant = 0x57;
    private StripeBuffers _buffers = null!;
    private byte* _table;

    [Params("k1")]
    public string Shape { get; set; } = "k1";

    protected override bool ComparesIsaLVariants => false;

    [GlobalSetup]
    public void Setup()
    {
        ResolveImplementation();
        _buffers = new StripeBuffers(2, Chunk, Layout);
        _table = (byte*)NativeMemory.AlignedAlloc(32, 64);
        IsaL.Instance?.GfVectMulInit(Constant, _table);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _buffers.Dispose();
        NativeMemory.AlignedFree(_table);
    }

    [Benchmark]
    public void MulConst()
    {
        if (IsaLPath is not null)
            Check(IsaL.Instance!.GfVectMul(Chunk, _table, _buffers[0], _buffers[1]));
        else
            GfVector.Multiply(Constant, _buffers.Stripe.GetRowSpan(0), _buffers.Stripe.GetRowSpan(1), Kernels);
    }
}
