using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using Storage.CommandLine;
using Storage.Devices;
using Storage.Parity;
using Storage.Raid;
using Storage.Versioning;

namespace Storage.Cli;

/// <summary>
/// <c>storage quickstart</c>: a RAID-6 array (8 data + P + Q, md left-symmetric, 64 KiB chunks) over ten
/// file-backed disks in a local folder. Writes seeded data and checks it; stops the array and deletes two disk
/// files; assembles the eight left and reads everything back degraded; adds two spare files and rebuilds onto
/// them with a progress bar; scrubs every stripe; checks the SHA-256 of the data at each step. Then it formats the
/// array as a pool, writes to a thin volume, snapshots it, overwrites it, rolls it back and checks that the data
/// is back. Running it again
/// replaces what it made before; a folder it did not make is refused untouched.
/// </summary>
internal static class QuickstartCommand
{
    private const string Marker = ".storage-quickstart";
    private const int Members = 10;
    private const int Chunk = 64 * 1024;
    private const int Request = 4 << 20;
    private static readonly int[] Failed = [3, 7];

    /// <summary>The smallest array: the pool at the end needs room for its log and eight 512 KiB segments.</summary>
    private const long MinCapacity = 8 << 20;

    public static Command Build()
    {
        var dir = CliOptions.Text("--dir", "the folder for the disk files (default ./quickstart)", "DIR");
        var size = CliOptions.Number("--size-mib", "MiB of data to write (default 256; at least 8)", 1, 1 << 20);
        var command = new Command("quickstart", "RAID-6 8+2 over file-backed disks: write, lose two disks, read degraded, rebuild onto spares, scrub, verify; then a pool: snapshot, overwrite, roll back");
        command.Options.Add(dir);
        command.Options.Add(size);
        command.SetAction(p => RunAsync(Path.GetFullPath(p.GetValue(dir) ?? "quickstart"), p.GetValue(size) ?? 256, p.Out()).GetAwaiter().GetResult());
        return command;
    }

    private static async Task<int> RunAsync(string dir, int sizeMiB, TextWriter output)
    {
        PrepareFolder(dir);
        long dataPerMember = Math.Max(MinCapacity / (Members - 2), ((long)sizeMiB << 20) / (Members - 2) / Chunk * Chunk);
        long diskSize = dataPerMember + RaidArray.HeaderSize(Chunk);   // superblocks and journal first
        var disks = Enumerable.Range(0, Members).Select(d => Path.Combine(dir, $"disk{d:00}.img")).ToArray();
        var spares = Failed.Select(d => Path.Combine(dir, $"spare{d:00}.img")).ToArray();

        var array = await RaidArray.CreateAsync(
            [.. disks.Select(path => FileBlockDevice.Create(path, diskSize))],
            new ArrayCreateOptions { Level = RaidLevel.Raid6, ChunkSize = Chunk, Name = "quickstart", AssumeZeroed = true }).ConfigureAwait(false);
        output.WriteLine($"created {array.Geometry} in {dir}");
        output.WriteLine($"  {array.Capacity >> 20} MiB usable on {Members} sparse files of {diskSize >> 20} MiB; parity kernels {KernelSets.Default.Name}; journal on");

        // 1. Write seeded data in 4 MiB requests; each one is durable when it returns (journalled).
        var clock = Stopwatch.StartNew();
        string written;
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            var random = new Random(20261126);
            var buffer = new byte[Request];
            await Progress.RunAsync(output, "write", array.Capacity, async report =>
            {
                for (long offset = 0; offset < array.Capacity; offset += Request)
                {
                    int length = (int)Math.Min(Request, array.Capacity - offset);
                    random.NextBytes(buffer.AsSpan(0, length));
                    hash.AppendData(buffer, 0, length);
                    await array.WriteAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
                    report(offset + length);
                }
            }).ConfigureAwait(false);
            await array.FlushAsync().ConfigureAwait(false);
            written = Convert.ToHexString(hash.GetHashAndReset());
        }
        Line(output, "wrote", array.Capacity, clock, $"sha256 {written[..16]}…");
        if (!await VerifyAsync(array, written, output, "read back").ConfigureAwait(false))
            return Cli.Failed;
        await array.StopAsync().ConfigureAwait(false);

        // 2. Two disks die: their files are gone. The eight left assemble degraded.
        foreach (int d in Failed)
            File.Delete(disks[d]);
        output.WriteLine($"deleted {string.Join(" and ", Failed.Select(d => Path.GetFileName(disks[d])))}: two of ten disks are gone");
        array = await RaidArray.AssembleAsync([.. disks.Where(File.Exists).Select(path => FileBlockDevice.Open(path))]).ConfigureAwait(false);
        output.WriteLine($"assembled from {Members - Failed.Length} disks: {array.Status().State}");
        if (!await VerifyAsync(array, written, output, "read degraded").ConfigureAwait(false))
            return Cli.Failed;

        // 3. Two spares arrive; the array rebuilds the missing roles onto them in the background.
        clock.Restart();
        foreach (var spare in spares)
            await array.AddAsync(FileBlockDevice.Create(spare, diskSize)).ConfigureAwait(false);
        long rebuildBytes = Failed.Length * array.Geometry.MemberDataSize;
        await Progress.RunAsync(output, "rebuild", rebuildBytes, async report =>
        {
            while (array.Rebuilds is { Count: > 0 } now)
            {
                report(now.Sum(r => r.StripesDone) * Chunk);
                await Task.Delay(20).ConfigureAwait(false);
            }
            await array.WaitForRebuildsAsync().ConfigureAwait(false);
            report(rebuildBytes);
        }).ConfigureAwait(false);
        Line(output, "rebuilt onto spares", rebuildBytes, clock, $"array {array.Status().State}");

        // 4. Scrub: every stripe's P and Q against its data; then the data once more.
        clock.Restart();
        var scrub = await array.ScrubAsync(repair: false).ConfigureAwait(false);
        Line(output, "scrubbed", array.Geometry.StripeCount * (long)Members * Chunk, clock, scrub.Mismatches == 0 ? $"{scrub.StripesChecked} stripes consistent" : $"{scrub.Mismatches} INCONSISTENT stripes");
        bool ok = scrub.Mismatches == 0 && await VerifyAsync(array, written, output, "read after rebuild").ConfigureAwait(false);

        // 5. The array becomes a pool of thin volumes: write, snapshot, overwrite, roll back.
        ok = ok && await PoolDemoAsync(array, output).ConfigureAwait(false);
        await array.StopAsync().ConfigureAwait(false);
        output.WriteLine(ok ? "quickstart: OK" : "quickstart: FAILED");
        return ok ? Cli.Ok : Cli.Failed;
    }

    private static async Task<bool> PoolDemoAsync(RaidArray array, TextWriter output)
    {
        var clock = Stopwatch.StartNew();
        // Force: the array holds the data written above, which the pool replaces.
        var pool = await Pool.CreateAsync(array, new PoolCreateOptions { Name = "quickstart", Force = true }).ConfigureAwait(false);
        await using (pool.ConfigureAwait(false))
        {
            const long VirtualSize = 1L << 30;
            await pool.CreateVolumeAsync("demo", VirtualSize).ConfigureAwait(false);
            var status = pool.GetStatus();
            output.WriteLine($"created pool 'quickstart' on the array ({PoolCommands.Bytes(status.TotalBytes)}, {PoolCommands.Bytes(pool.BlockSize)} blocks) and thin volume 'demo' of {PoolCommands.Bytes(VirtualSize)}");
            long bytes = Math.Clamp(array.Capacity / 8, 1 << 20, 16 << 20) / pool.BlockSize * pool.BlockSize;
            using var volume = pool.OpenVolume("demo");
            string original = await WritePatternAsync(volume, bytes, seed: 1).ConfigureAwait(false);
            await pool.CreateSnapshotAsync("demo", "before").ConfigureAwait(false);
            string overwritten = await WritePatternAsync(volume, bytes, seed: 2).ConfigureAwait(false);
            bool changed = await HashAsync(volume, bytes).ConfigureAwait(false) == overwritten && overwritten != original;
            string snapshot;
            using (var before = pool.OpenSnapshot("demo", "before"))
                snapshot = await HashAsync(before, bytes).ConfigureAwait(false);
            Line(output, "snapshot, overwrite", 2 * bytes, clock, $"demo sha256 {overwritten[..16]}…, demo@before still {snapshot[..16]}…");
            clock.Restart();
            await pool.RollbackAsync("demo", "before").ConfigureAwait(false);
            string back = await HashAsync(volume, bytes).ConfigureAwait(false);
            bool same = changed && snapshot == original && back == original;
            Line(output, "rolled back to @before", bytes, clock, same ? $"sha256 {back[..16]}…: data is back" : "DATA MISMATCH");
            status = pool.GetStatus();
            output.WriteLine($"  pool: {PoolCommands.Bytes(status.UsedBytes)} used of {PoolCommands.Bytes(status.TotalBytes)}, {status.Volumes} volume, {status.Snapshots} snapshot, {status.ChecksumErrors} checksum errors");
            return same;
        }
    }

    /// <summary>Writes seeded bytes over the first <paramref name="bytes"/> of the volume, commits, returns their SHA-256.</summary>
    private static async Task<string> WritePatternAsync(PoolVolume device, long bytes, int seed)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var random = new Random(seed);
        var buffer = new byte[Math.Min(Request, bytes)];
        for (long offset = 0; offset < bytes; offset += buffer.Length)
        {
            int length = (int)Math.Min(buffer.Length, bytes - offset);
            random.NextBytes(buffer.AsSpan(0, length));
            hash.AppendData(buffer, 0, length);
            await device.WriteAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
        }
        await device.FlushAsync().ConfigureAwait(false);
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static async Task<string> HashAsync(PoolVolume device, long bytes)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[Math.Min(Request, bytes)];
        for (long offset = 0; offset < bytes; offset += buffer.Length)
        {
            int length = (int)Math.Min(buffer.Length, bytes - offset);
            await device.ReadAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
            hash.AppendData(buffer, 0, length);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static async Task<bool> VerifyAsync(RaidArray array, string expected, TextWriter output, string what)
    {
        var clock = Stopwatch.StartNew();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[Request];
        await Progress.RunAsync(output, what, array.Capacity, async report =>
        {
            for (long offset = 0; offset < array.Capacity; offset += Request)
            {
                int length = (int)Math.Min(Request, array.Capacity - offset);
                await array.ReadAsync(offset, buffer.AsMemory(0, length)).ConfigureAwait(false);
                hash.AppendData(buffer, 0, length);
                report(offset + length);
            }
        }).ConfigureAwait(false);
        bool same = Convert.ToHexString(hash.GetHashAndReset()) == expected;
        Line(output, what, array.Capacity, clock, same ? "data intact" : "DATA MISMATCH");
        return same;
    }

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

    private static void Line(TextWriter output, string what, long bytes, Stopwatch clock, string note)
    {
        double megabytes = bytes / 1e6;
        output.WriteLine($"{what,-22} {megabytes,8:0.0} MB in {clock.Elapsed.TotalSeconds,6:0.000} s = {megabytes / Math.Max(clock.Elapsed.TotalSeconds, 1e-6),6:0} MB/s  {note}");
    }
}
