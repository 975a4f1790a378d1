using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using CommunityToolkit.HighPerformance;
using Storage.CommandLine;
using Storage.Parity;
using Storage.Parity.Interop;

namespace Storage.Cli;

/// <summary>
/// <c>storage bench parity</c>: a quick look at parity throughput per kernel set on this CPU, with
/// ISA-L beside it when installed. GB/s counts data bytes (k × chunk). For publishable numbers use
/// BenchmarkDotNet in bench/ (docs/benchmarks.md).
/// </summary>
internal static unsafe class BenchParityCommand
{
    private static readonly TimeSpan Window = TimeSpan.FromMilliseconds(200);

    public static Command Build()
    {
        var size = CliOptions.Number("--size-kib", "chunk size in KiB (default 64)", 4, 16384);
        var json = CliOptions.Flag("--json", "print one JSON document");
        var reverse = CliOptions.Flag("--reverse", "measure the kernel sets in reverse order (the figures must not depend on it)");
        var parity = new Command("parity", "parity GB/s per kernel set on this CPU, ISA-L beside it when installed");
        parity.Options.Add(size);
        parity.Options.Add(json);
        parity.Options.Add(reverse);
        parity.SetAction(p => Run((p.GetValue(size) ?? 64) * 1024, p.GetValue(json), p.GetValue(reverse), p.Out()));
        return Cli.Group("bench", "quick measurements on this machine (BenchmarkDotNet in bench/ for publishable numbers)", parity);
    }

    private static int Run(int chunk, bool json, bool reverse, TextWriter output)
    {
        var results = new List<BenchResult>();
        var isal = IsaL.Instance;

        foreach (var op in Operations)
        {
            using var stripe = new NativeStripe(op.K + op.M, chunk);
            var candidates = new List<(string Kernels, Action<NativeStripe> Run)>();
            if (isal is not null)
                candidates.Add(("isa-l", op.IsaL(isal)));
            candidates.AddRange(KernelSets.Available.Select(set => (set.Name, op.Ours(set))));
            if (reverse)
                candidates.Reverse();
            foreach (var (kernels, run) in candidates)
                results.Add(new BenchResult(op.Name, kernels, Measure(op.K, chunk, () => run(stripe))));
        }

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new BenchDocument(chunk, KernelSets.Default.Name, results), CliJson.Default.BenchDocument));
            return Cli.Ok;
        }
        output.WriteLine($"Parity throughput, {chunk / 1024} KiB chunks, one thread, GB/s of data bytes. Default kernel set: {KernelSets.Default.Name}.");
        output.WriteLine(isal is null ? $"(ISA-L not shown: {IsaL.UnavailableReason})" : "(ISA-L: its own runtime dispatch)");
        var columns = results.Select(r => r.Kernels).Distinct().ToArray();
        output.WriteLine($"{"operation",-22}" + string.Concat(columns.Select(c => $"{c,11}")));
        foreach (var row in results.GroupBy(r => r.Operation))
            output.WriteLine($"{row.Key,-22}" + string.Concat(columns.Select(c => row.FirstOrDefault(r => r.Kernels == c) is { } r ? $"{r.GBps,11:0.0}" : $"{"-",11}")));
        return Cli.Ok;
    }

    private sealed record Operation(string Name, int K, int M, Func<KernelSet, Action<NativeStripe>> Ours, Func<IsaL, Action<NativeStripe>> IsaL);

    private static readonly Operation[] Operations =
    [
        new("raid5 xor k=8", 8, 1,
            set => { var c = new Raid5Codec(set); return s => c.ComputeParity(s.Span); },
            isal => s => isal.Dispatched.XorGen(9, s.Chunk, (void**)s.Rows)),
        new("raid6 p+q k=8", 8, 2,
            set => { var c = new Raid6Codec(set); return s => c.ComputeParity(s.Span); },
            isal => s => isal.Dispatched.PqGen(10, s.Chunk, (void**)s.Rows)),
        new("rs 10+4 encode", 10, 4,
            set => { var c = new ReedSolomonCodec(10, 4, set); return s => c.Encode(s.Span); },
            isal => IsaLDotProduct(isal, GfMatrix.Cauchy(14, 10).AsSpan(100).ToArray(), 10, 4, Enumerable.Range(0, 10).ToArray(), [10, 11, 12, 13])),
        new("rs 8+2 rebuild 2 data", 8, 2,
            set => { var c = new ReedSolomonCodec(8, 2, set); int[] lost = [2, 5]; return s => c.Reconstruct(s.Span, lost); },
            isal => IsaLDotProduct(isal, DecodeMatrix(8, 2, [2, 5]), 8, 2, [0, 1, 3, 4, 6, 7, 8, 9], [2, 5])),
    ];

    /// <summary>ec_encode_data with tables built once: outputs = matrix × inputs (rows of the stripe).</summary>
    private static Action<NativeStripe> IsaLDotProduct(IsaL isal, byte[] matrix, int k, int outputs, int[] inputRows, int[] outputRows)
    {
        byte[] tables = GC.AllocateArray<byte>(32 * k * outputs, pinned: true);
        fixed (byte* m = matrix)
        fixed (byte* t = tables)
            isal.EcInitTables(k, outputs, m, t);
        var pointers = GC.AllocateArray<nint>(k + outputs, pinned: true);
        return s =>
        {
            for (int i = 0; i < k; i++)
                pointers[i] = (nint)s.Rows[inputRows[i]];
            for (int o = 0; o < outputs; o++)
                pointers[k + o] = (nint)s.Rows[outputRows[o]];
            fixed (byte* t = tables)
            fixed (nint* p = pointers)
                isal.Dispatched.EcEncodeData(s.Chunk, k, outputs, t, (byte**)p, (byte**)(p + k));
        };
    }

    /// <summary>ISA-L's decode recipe: the rows of the inverted survivor matrix that rebuild the lost data rows.</summary>
    private static byte[] DecodeMatrix(int k, int m, int[] lost)
    {
        var generator = GfMatrix.Cauchy(k + m, k);
        var survivors = Enumerable.Range(0, k + m).Where(r => !lost.Contains(r)).Take(k).ToArray();
        var sub = new byte[k * k];
        for (int i = 0; i < k; i++)
            generator.AsSpan(survivors[i] * k, k).CopyTo(sub.AsSpan(i * k));
        var inverse = new byte[k * k];
        GfMatrix.TryInvert(sub, inverse, k);
        return lost.SelectMany(row => inverse.AsSpan(row * k, k).ToArray()).ToArray();
    }

    private static double Measure(int k, int chunk, Action operation)
    {
        for (var warm = Stopwatch.StartNew(); warm.Elapsed < Window / 4;)
            operation();
        long iterations = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < Window)
        {
            for (int i = 0; i < 16; i++)
                operation();
            iterations += 16;
        }
        return (double)k * chunk * iterations / clock.Elapsed.TotalSeconds / 1e9;
    }

    /// <summary>Rows at different page offsets (no 4K aliasing), 64-byte aligned, as ISA-L requires.</summary>
    private sealed class NativeStripe : IDisposable
    {
        private readonly byte* _memory;

        public NativeStripe(int rows, int chunk)
        {
            Chunk = chunk;
            Pitch = chunk + 4096 + 320;
            _memory = (byte*)NativeMemory.AlignedAlloc((nuint)((long)rows * Pitch), 4096);
            new Random(42).NextBytes(new Span<byte>(_memory, rows * Pitch));
            Rows = (byte**)NativeMemory.Alloc((nuint)(rows * sizeof(byte*)));
            for (int i = 0; i < rows; i++)
                Rows[i] = _memory + (long)i * Pitch;
            Height = rows;
        }

        public int Chunk { get; }

        public int Pitch { get; }

        public int Height { get; }

        public byte** Rows { get; }

        public Span2D<byte> Span => new(_memory, Height, Chunk, Pitch - Chunk);

        public void Dispose()
        {
            NativeMemory.AlignedFree(_memory);
            NativeMemory.Free(Rows);
        }
    }
}
