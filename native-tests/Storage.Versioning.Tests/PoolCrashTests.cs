using Storage.Devices;
using Storage.Raid;
using Storage.Raid.Tests;

namespace Storage.Versioning.Tests;

/// <summary>
/// Crash atomicity: a pool takes writes, trims, flushes, snapshots, snapshot deletes, clones and rollbacks; at a
/// seeded device call the power goes (un-flushed sectors torn or lost); on an array, up to m members then never come
/// back. The pool opened from what is left must hold exactly the state of its last acknowledged commit (or of the
/// commit that was cut off, complete), every acknowledged flush included, with space that adds up; and it must go on
/// working. Seeds: STORAGE_POOL_CRASH_SEEDS (count per case, default 150; nightly 2000); STORAGE_POOL_CRASH_SEED replays one.
/// </summary>
public class PoolCrashTests(ITestOutputHelper output)
{
    private static readonly PoolOpenOptions Manual = new() { CommitInterval = TimeSpan.Zero };

    [Fact]
    public Task Plain_device_with_torn_writes() => AllSeedsPassAsync(seed => RunAsync(seed, parity: -1, CrashMode.TearUnflushed), "plain torn");

    [Fact]
    public Task Plain_device_losing_unflushed_writes() => AllSeedsPassAsync(seed => RunAsync(seed, parity: -1, CrashMode.DropUnflushed), "plain dropped");

    [Fact]
    public Task Raid5_then_a_member_failure() => AllSeedsPassAsync(seed => RunAsync(seed, parity: 1, CrashMode.TearUnflushed), "raid5");

    [Fact]
    public Task Raid6_then_two_member_failures() => AllSeedsPassAsync(seed => RunAsync(seed, parity: 2, CrashMode.TearUnflushed), "raid6");

    private async Task AllSeedsPassAsync(Func<int, Task<string?>> run, string what)
    {
        var failures = new List<string>();
        foreach (int seed in Seeds())
        {
            if (await run(seed) is { } failure)
                failures.Add($"seed {seed}: {failure}");
        }
        foreach (var failure in failures.Take(5))
            output.WriteLine(failure);
        Assert.True(failures.Count == 0, $"{failures.Count} {what} crash seeds failed; replay one with STORAGE_POOL_CRASH_SEED=<seed>. First: {failures.FirstOrDefault()}");
    }

    private static IEnumerable<int> Seeds()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("STORAGE_POOL_CRASH_SEED"), out int one))
            return [one];
        int count = int.TryParse(Environment.GetEnvironmentVariable("STORAGE_POOL_CRASH_SEEDS"), out int n) ? n : 150;
        return Enumerable.Range(1, count);
    }

    /// <summary>One seeded run on a plain device (<paramref name="parity"/> &lt; 0) or a RAID-5/6; null when it passed.</summary>
    private static async Task<string?> RunAsync(int seed, int parity, CrashMode mode)
    {
        var random = new Random(seed);
        var rig = parity < 0 ? (Rig)new PlainRig(seed) : new ArrayRig(seed, parity);
        IBlockDevice device = await rig.StartAsync();
        var pool = await Pool.CreateAsync(device, new PoolCreateOptions { Name = "crash", BlockSize = 4096 }, Manual);
        var now = new Reference();
        foreach (string name in new[] { "a", "b" })
        {
            await pool.CreateVolumeAsync(name, 256 << 10);
            now.Volumes[name] = new byte[256 << 10];
        }
        var acked = now.Copy();
        Reference? cutOff = null;
        rig.Arm(random.Next(1, 600), mode);
        try
        {
            for (int step = 0; step < 60 && !rig.Fired; step++)
            {
                var next = now.Copy();
                Func<Task> action = Plan(pool, next, random, step, out bool commits);
                if (commits)
                    cutOff = next;
                try
                {
                    await action();
                }
                catch (Exception e) when (rig.Fired && e is IOException or BlockDeviceException or ObjectDisposedException or PoolConfigurationException)
                {
                    break;
                }
                now = next;
                if (commits)
                {
                    acked = now.Copy();
                    cutOff = null;
                }
            }
        }
        finally
        {
            if (!rig.Fired)
                await rig.CutAsync();
        }
        device = await rig.RestartAsync(random);

        Pool again;
        try
        {
            again = await Pool.OpenAsync(device, Manual);
        }
        catch (Exception e) when (e is PoolConfigurationException or IOException)
        {
            return $"open failed after the crash at call {rig.Target}: {e.Message}";
        }
        try
        {
            string? asAcked = await acked.DiffAsync(again);
            if (asAcked is not null && (cutOff is null || await cutOff.DiffAsync(again) is not null))
                return $"after the crash at call {rig.Target}: {asAcked}";
            var recovered = asAcked is null ? acked : cutOff!;
            if (again.CheckSpace() is { } space)
                return $"space after recovery: {space}";
            // It goes on working: write, commit, reopen.
            var fresh = Bytes.Random(64 << 10, seed);
            using (var volume = again.OpenVolume("a"))
            {
                await volume.WriteAsync(0, fresh);
                await volume.FlushAsync();
            }
            fresh.CopyTo(recovered.Volumes["a"], 0);
            await again.DisposeAsync();
            again = await Pool.OpenAsync(device, Manual);
            if (await recovered.DiffAsync(again) is { } later)
                return $"after recovery and one more commit: {later}";
            return again.CheckSpace();
        }
        finally
        {
            await again.DisposeAsync();
            await rig.StopAsync(device);
        }
    }

    /// <summary>The next step: applies it to <paramref name="next"/> (the reference as it will be) and returns the pool call.</summary>
    private static Func<Task> Plan(Pool pool, Reference next, Random random, int step, out bool commits)
    {
        string volume = next.Volumes.Keys.Order(StringComparer.Ordinal).ElementAt(random.Next(next.Volumes.Count));
        var bytes = next.Volumes[volume];
        int roll = random.Next(100);
        commits = roll >= 70;
        if (roll < 55)
        {
            int length = random.Next(1, 40) * 512;
            int offset = random.Next((bytes.Length - length) / 512 + 1) * 512;
            var data = Bytes.Random(length, random.Next());
            data.CopyTo(bytes, offset);
            bool fua = random.Next(8) == 0;
            commits = fua;
            return async () =>
            {
                using var device = pool.OpenVolume(volume);
                await device.WriteAsync(offset, data, fua);
            };
        }
        if (roll < 70)
        {
            int length = random.Next(1, 40) * 512;
            int offset = random.Next((bytes.Length - length) / 512 + 1) * 512;
            Array.Clear(bytes, offset, length);
            return async () =>
            {
                using var device = pool.OpenVolume(volume);
                await device.TrimAsync(offset, length);
            };
        }
        if (roll < 80)
            return () => pool.CommitAsync();
        var snapshots = next.Snapshots.Where(s => s.Key.StartsWith(volume + "@", StringComparison.Ordinal)).Select(s => s.Key).Order(StringComparer.Ordinal).ToArray();
        if (roll < 90 || snapshots.Length == 0)
        {
            string name = $"s{step}";
            next.Snapshots[$"{volume}@{name}"] = (byte[])bytes.Clone();
            next.Order.Add($"{volume}@{name}");
            return () => pool.CreateSnapshotAsync(volume, name);
        }
        string pick = snapshots[random.Next(snapshots.Length)];
        string snapshot = pick[(volume.Length + 1)..];
        if (roll < 95)
        {
            next.Snapshots.Remove(pick);
            next.Order.Remove(pick);
            return () => pool.DeleteSnapshotAsync(volume, snapshot);
        }
        // Rollback, destroying newer snapshots of that volume.
        int at = next.Order.IndexOf(pick);
        foreach (string newer in next.Order.Skip(at + 1).Where(s => s.StartsWith(volume + "@", StringComparison.Ordinal)).ToArray())
        {
            next.Snapshots.Remove(newer);
            next.Order.Remove(newer);
        }
        next.Volumes[volume] = (byte[])next.Snapshots[pick].Clone();
        return () => pool.RollbackAsync(volume, snapshot, destroyNewer: true);
    }

    private sealed class Reference
    {
        public Dictionary<string, byte[]> Volumes { get; } = [];

        public Dictionary<string, byte[]> Snapshots { get; } = [];

        public List<string> Order { get; } = [];

        public Reference Copy()
        {
            var copy = new Reference();
            foreach (var (k, v) in Volumes)
                copy.Volumes[k] = (byte[])v.Clone();
            foreach (var (k, v) in Snapshots)
                copy.Snapshots[k] = v;
            copy.Order.AddRange(Order);
            return copy;
        }

        public async Task<string?> DiffAsync(Pool pool)
        {
            foreach (var (name, expected) in Volumes)
            {
                using var device = pool.OpenVolume(name);
                var got = new byte[expected.Length];
                await device.ReadAsync(0, got);
                if (got.AsSpan().CommonPrefixLength(expected) is var at && at != expected.Length)
                    return $"volume {name} differs at byte {at}";
            }
            var snapshots = pool.ListSnapshots().Select(s => s.FullName).Order(StringComparer.Ordinal).ToArray();
            if (!snapshots.SequenceEqual(Snapshots.Keys.Order(StringComparer.Ordinal)))
                return $"snapshots [{string.Join(",", snapshots)}], expected [{string.Join(",", Snapshots.Keys.Order(StringComparer.Ordinal))}]";
            foreach (var (name, expected) in Snapshots)
            {
                var parts = name.Split('@');
                using var device = pool.OpenSnapshot(parts[0], parts[1]);
                var got = new byte[expected.Length];
                await device.ReadAsync(0, got);
                if (got.AsSpan().CommonPrefixLength(expected) is var at && at != expected.Length)
                    return $"snapshot {name} differs at byte {at}";
            }
            return null;
        }
    }

    /// <summary>What the pool runs on, with a power cut at the n-th device call.</summary>
    private abstract class Rig
    {
        private int _calls;
        private int _target = -1;
        private CrashMode _mode;

        public int Target => _target;

        public bool Fired { get; private set; }

        public abstract Task<IBlockDevice> StartAsync();

        public void Arm(int target, CrashMode mode) => (_target, _mode, _calls) = (target, mode, 0);

        protected void Tick()
        {
            if (_target > 0 && Interlocked.Increment(ref _calls) == _target)
                CutAsync().GetAwaiter().GetResult();
        }

        public async Task CutAsync()
        {
            Fired = true;
            await CutCoreAsync(_mode);
        }

        protected abstract Task CutCoreAsync(CrashMode mode);

        public abstract Task<IBlockDevice> RestartAsync(Random random);

        public abstract Task StopAsync(IBlockDevice device);
    }

    private sealed class PlainRig(int seed) : Rig
    {
        private readonly MemoryBlockDevice _disk = new(24L << 20, 512, "disk");
        private FaultInjectingDevice? _fault;

        public override Task<IBlockDevice> StartAsync()
        {
            _fault = new FaultInjectingDevice(_disk, seed, leaveInnerOpen: true);
            return Task.FromResult<IBlockDevice>(new Hooked(_fault, Tick));
        }

        protected override async Task CutCoreAsync(CrashMode mode) => await _fault!.CrashAsync(mode);

        public override Task<IBlockDevice> RestartAsync(Random random)
        {
            _fault = new FaultInjectingDevice(_disk, seed + 1, leaveInnerOpen: true);
            return Task.FromResult<IBlockDevice>(_fault);
        }

        public override Task StopAsync(IBlockDevice device)
        {
            device.Dispose();
            return Task.CompletedTask;
        }
    }

    private sealed class ArrayRig(int seed, int parity) : Rig
    {
        private readonly TestArray _test = new(parity == 1 ? RaidLevel.Raid5 : RaidLevel.Raid6, parity + 3, parity, 16 * 1024, 8L << 20, seed);
        private CrashMode _mode = CrashMode.TearUnflushed;

        public override async Task<IBlockDevice> StartAsync()
        {
            _test.BeforeCall = Tick;
            return await _test.CreateAsync();
        }

        protected override async Task CutCoreAsync(CrashMode mode)
        {
            _mode = mode;
            await _test.PowerCutAsync(mode);
        }

        public override async Task<IBlockDevice> RestartAsync(Random random)
        {
            _test.BeforeCall = null;
            var gone = Enumerable.Range(0, _test.MemberCount).OrderBy(_ => random.Next()).Take(random.Next(0, parity + 1)).ToArray();
            return await _test.AssembleAsync(1, gone);
        }

        public override async Task StopAsync(IBlockDevice device) => await ((RaidArray)device).StopAsync();
    }

    private sealed class Hooked(IBlockDevice inner, Action before) : BlockDevice(inner.Name, inner.Capacity, inner.SectorSize)
    {
        protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            before();
            return inner.ReadAsync(offset, buffer, cancellationToken);
        }

        protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
        {
            before();
            return inner.WriteAsync(offset, buffer, forceUnitAccess, cancellationToken);
        }

        protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken)
        {
            before();
            return inner.FlushAsync(cancellationToken);
        }

        protected override ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
        {
            before();
            return inner.TrimAsync(offset, length, cancellationToken);
        }
    }
}
