using System.Diagnostics;
using System.Security.Cryptography;
using CommunityToolkit.HighPerformance;
using Microsoft.Win32.SafeHandles;
using Storage.Parity;

namespace Storage.Cli;

/// <summary>
/// <c>storage quickstart</c>: RAID-6 (8 data + P + Q, md left-symmetric rotation, 64 KiB chunks) over
/// ten file-backed disks in a local folder. Writes seeded data, deletes two disk files, reads
/// everything back degraded, rebuilds onto two spare files, scrubs every stripe and checks the
/// SHA-256 of the data each time. Running it again replaces what it made before; a folder it did
/// not make is refused.
/// </summary>
internal static class QuickstartCommand
{
    private const string Marker = ".storage-quickstart";
    private const int DataDisks = 8;
    private const int Disks = DataDisks + 2;
    private const int Chunk = 64 * 1024;
    private static readonly int[] Failed = [3, 7];

    public static int Run(Options options, TextWriter output)
    {
        string dir = Path.GetFullPath(options.String("dir") ?? "quickstart");
        int sizeMiB = options.Int("size-mib", 64, 1, 65536);
        int stripes = (int)Math.Max(1, (long)sizeMiB * 1024 * 1024 / (DataDisks * Chunk));
        PrepareFolder(dir);

        var codec = new Raid6Codec();
        output.WriteLine($"RAID-6 {DataDisks}+2, {Chunk / 1024} KiB chunks, {stripes} stripes ({(long)stripes * DataDisks * Chunk >> 20} MiB of data) in {dir}");
        output.WriteLine($"Parity kernels: {codec.Kernels.Name} (available: {string.Join(", ", KernelSets.Available.Select(s => s.Name))})");

        var buffer = new byte[Disks * Chunk];
        var stripe = new Span2D<byte>(buffer, Disks, Chunk);
        var disks = Enumerable.Range(0, Disks).Select(d => DiskPath(dir, d)).ToArray();

        // 1. Write: data from a seeded generator, P and Q computed per stripe, each chunk to its disk.
        string written;
        var clock = Stopwatch.StartNew();
        using (var handles = new DiskSet(disks, FileMode.CreateNew, (long)stripes * Chunk))
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            var rng = new Random(20261126);
            for (int s = 0; s < stripes; s++)
            {
                rng.NextBytes(buffer.AsSpan(0, DataDisks * Chunk));
                hash.AppendData(buffer, 0, DataDisks * Chunk);
                codec.ComputeParity(stripe);
                for (int d = 0; d < Disks; d++)
                    RandomAccess.Write(handles[d], stripe.GetRowSpan(RowOf(d, s)), (long)s * Chunk);
                Progress(output, "write", s + 1, stripes, clock);
            }
            handles.Flush();
            written = Convert.ToHexString(hash.GetHashAndReset());
        }
        Report(output, "wrote and flushed", stripes, clock, $"sha256 {written[..16]}…");

        // 2. Two disks fail: their files are gone.
        foreach (int d in Failed)
            File.Delete(disks[d]);
        output.WriteLine($"failed disks {string.Join(" and ", Failed.Select(d => Path.GetFileName(disks[d])))} (files deleted)");

        // 3. Degraded read: every stripe rebuilt in memory from the eight survivors.
        clock.Restart();
        string degraded = ReadAll(disks, stripes, codec, buffer, output, clock, spares: null);
        Report(output, "read degraded", stripes, clock, degraded == written ? "data intact" : "DATA MISMATCH");
        if (degraded != written)
            return Cli.Failed;

        // 4. Rebuild onto spares, then the spares take the failed disks' places.
        var spares = Failed.Select(d => Path.Combine(dir, $"spare{d:00}.img")).ToArray();
        clock.Restart();
        ReadAll(disks, stripes, codec, buffer, output, clock, spares);
        for (int i = 0; i < Failed.Length; i++)
            File.Move(spares[i], disks[Failed[i]]);
        Report(output, "rebuilt onto spares", stripes, clock, "");

        // 5. Scrub every stripe with all ten disks, then check the data once more.
        clock.Restart();
        int inconsistent = 0;
        string scrubbed;
        using (var handles = new DiskSet(disks, FileMode.Open, 0))
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            for (int s = 0; s < stripes; s++)
            {
                for (int d = 0; d < Disks; d++)
                    RandomAccess.Read(handles[d], stripe.GetRowSpan(RowOf(d, s)), (long)s * Chunk);
                if (!codec.Verify(stripe).IsConsistent)
                    inconsistent++;
                hash.AppendData(buffer, 0, DataDisks * Chunk);
                Progress(output, "scrub", s + 1, stripes, clock);
            }
            scrubbed = Convert.ToHexString(hash.GetHashAndReset());
        }
        bool ok = inconsistent == 0 && scrubbed == written;
        Report(output, "scrubbed", stripes, clock, ok ? "every stripe consistent, data intact" : $"{inconsistent} inconsistent stripes, data {(scrubbed == written ? "intact" : "MISMATCH")}");
        output.WriteLine(ok ? "quickstart: OK" : "quickstart: FAILED");
        return ok ? Cli.Ok : Cli.Failed;
    }

    /// <summary>Reads every stripe from the surviving disks and rebuilds the failed rows; writes them to spares when given.</summary>
    private static string ReadAll(string[] disks, int stripes, Raid6Codec codec, byte[] buffer, TextWriter output, Stopwatch clock, string[]? spares)
    {
        var stripe = new Span2D<byte>(buffer, Disks, Chunk);
        var surviving = disks.Select((path, d) => Failed.Contains(d) ? null : File.OpenHandle(path, FileMode.Open, FileAccess.Read)).ToArray();
        using var spareSet = spares is null ? null : new DiskSet(spares, FileMode.CreateNew, (long)stripes * Chunk);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        try
        {
            for (int s = 0; s < stripes; s++)
            {
                for (int d = 0; d < Disks; d++)
                    if (surviving[d] is { } handle)
                        RandomAccess.Read(handle, stripe.GetRowSpan(RowOf(d, s)), (long)s * Chunk);
                codec.Recover(stripe, RowOf(Failed[0], s), RowOf(Failed[1], s));
                hash.AppendData(buffer, 0, DataDisks * Chunk);
                if (spareSet is not null)
                    for (int i = 0; i < Failed.Length; i++)
                        RandomAccess.Write(spareSet[i], stripe.GetRowSpan(RowOf(Failed[i], s)), (long)s * Chunk);
                Progress(output, spares is null ? "degraded read" : "rebuild", s + 1, stripes, clock);
            }
            spareSet?.Flush();
        }
        finally
        {
            foreach (var handle in surviving)
                handle?.Dispose();
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>md left-symmetric RAID-6: P on disk (n-1) - (s mod n), Q after it, data i on (p+2+i) mod n. Rows: data 0..7, P 8, Q 9.</summary>
    private static int RowOf(int disk, int stripe)
    {
        int p = Disks - 1 - stripe % Disks;
        if (disk == p)
            return DataDisks;
        if (disk == (p + 1) % Disks)
            return DataDisks + 1;
        return (disk - p - 2 + 2 * Disks) % Disks;
    }

    private static string DiskPath(string dir, int disk) => Path.Combine(dir, $"disk{disk:00}.img");

    private static void PrepareFolder(string dir)
    {
        if (Directory.Exists(dir) && Directory.EnumerateFileSystemEntries(dir).Any())
        {
            if (!File.Exists(Path.Combine(dir, Marker)))
                throw new UsageException($"{dir} is not empty and was not made by 'storage quickstart'; nothing was changed. Pass an empty or new folder with --dir.");
            foreach (var image in Directory.EnumerateFiles(dir, "*.img"))
                File.Delete(image);
        }
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, Marker), "Made by 'storage quickstart'; it may delete the .img files here when run again.\n");
    }

    private static void Progress(TextWriter output, string phase, int done, int total, Stopwatch clock)
    {
        if (!Console.IsOutputRedirected && output == Console.Out)
        {
            if (done % 8 != 0 && done != total)
                return;
            int width = 30, filled = width * done / total;
            double rate = (double)done * DataDisks * Chunk / Math.Max(clock.Elapsed.TotalSeconds, 1e-6) / 1e6;
            double eta = clock.Elapsed.TotalSeconds * (total - done) / done;
            output.Write($"\r  {phase,-14} [{new string('#', filled)}{new string('.', width - filled)}] {100 * done / total,3}% {rate,7:0} MB/s ETA {eta,4:0}s");
            if (done == total)
                output.Write("\r" + new string(' ', 80) + "\r");
        }
        else if (done == total || done % Math.Max(1, total / 4) == 0)
        {
            output.WriteLine($"  {phase}: {done}/{total} stripes");
        }
    }

    private static void Report(TextWriter output, string what, int stripes, Stopwatch clock, string note)
    {
        double megabytes = (double)stripes * DataDisks * Chunk / 1e6;
        output.WriteLine($"{what,-22} {megabytes,8:0.0} MB in {clock.Elapsed.TotalSeconds,6:0.000} s = {megabytes / clock.Elapsed.TotalSeconds,8:0} MB/s  {note}");
    }

    /// <summary>Open file handles for a list of disk files, created with a size or opened as they are.</summary>
    private sealed class DiskSet : IDisposable
    {
        private readonly SafeFileHandle[] _handles;

        public DiskSet(string[] paths, FileMode mode, long size)
        {
            _handles = paths.Select(p => File.OpenHandle(p, mode, FileAccess.ReadWrite, FileShare.None, FileOptions.None, mode == FileMode.CreateNew ? size : 0)).ToArray();
            if (mode == FileMode.CreateNew)
                foreach (var handle in _handles)
                    RandomAccess.SetLength(handle, size);
        }

        public SafeFileHandle this[int i] => _handles[i];

        public void Flush()
        {
            foreach (var handle in _handles)
                RandomAccess.FlushToDisk(handle);
        }

        public void Dispose()
        {
            foreach (var handle in _handles)
                handle.Dispose();
        }
    }
}
