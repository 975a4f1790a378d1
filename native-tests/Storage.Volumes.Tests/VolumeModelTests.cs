using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>One Paxos cluster for every history (starting three replicas per case would dominate the run).</summary>
public sealed class MetadataClusterFixture : IAsyncLifetime
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "volumes-model-" + Guid.NewGuid().ToString("N"));

    public MetadataCluster Cluster { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Cluster = MetadataCluster.Start([.. Enumerable.Range(1, 3).Select(i => Path.Combine(_root, $"replica{i}"))]);
        await Cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
    }

    public ValueTask DisposeAsync()
    {
        Cluster.Dispose();
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// Random histories of creates, deletes, resizes, group snapshots and writes on volumes across three pools, any
/// transaction among them cut short at a random step and recovered, against a reference that holds every volume's
/// and every snapshot's bytes. After every step: nothing in doubt or staged, the catalogue and the pools hold exactly
/// the reference's volumes, segments and snapshots (every copy), each reads as the reference, and every pool's
/// space adds up.
/// </summary>
public sealed class VolumeModelTests(MetadataClusterFixture fixture) : IClassFixture<MetadataClusterFixture>
{
    private const long Segment = 1L << 20;
    private const int Block = 4096;
    private static int s_case;

    private sealed class Crash() : Exception("cut short");

    [FsCheck.Xunit.Property(MaxTest = 40, EndSize = 40)]
    public void Random_histories_with_crashes_match_the_reference(int[] script) => RunAsync(script).GetAwaiter().GetResult();

    [Fact]
    public async Task A_long_fixed_history_matches_the_reference()
        => await RunAsync([.. Enumerable.Range(0, 120).Select(i => i * 37 % 101)]);

    private async Task RunAsync(int[] script)
    {
        var history = new History(fixture.Cluster, $"m{Interlocked.Increment(ref s_case)}");
        await history.StartAsync();
        try
        {
            for (int index = 0; index < script.Length; index++)
            {
                try
                {
                    await history.StepAsync(script[index], index);
                }
                catch (Exception e) when (e is not Xunit.Sdk.XunitException)
                {
                    Assert.Fail($"{e}\nafter:\n{string.Join("\n", history.Log)}");
                }
                if (await history.CheckAsync() is { } error)
                    Assert.Fail($"{error}\nafter:\n{string.Join("\n", history.Log)}");
            }
        }
        finally
        {
            await history.DisposeAsync();
        }
    }

    private sealed class History(MetadataCluster cluster, string prefix) : IAsyncDisposable
    {
        private readonly List<PoolParticipant> _pools = [];
        private readonly Dictionary<string, byte[]> _volumes = new(StringComparer.Ordinal);
        private readonly Dictionary<(string Volume, string Snapshot), byte[]> _snapshots = [];
        private int _snapshotNames;

        public List<string> Log { get; } = [];

        private VolumeTransactions Transactions => new(cluster, _pools);

        private Dictionary<string, Pool> ByName => _pools.ToDictionary(p => p.Name, p => p.Pool);

        private string Name(int i) => $"{prefix}v{i}";

        public async Task StartAsync()
        {
            for (int i = 0; i < 3; i++)
            {
                var pool = await Pool.CreateAsync(new MemoryBlockDevice(48L << 20, 512, $"disk{i}"), new PoolCreateOptions { Name = $"{prefix}p{i}" },
                    new PoolOpenOptions { CommitInterval = TimeSpan.Zero });
                _pools.Add(new PoolParticipant($"{prefix}p{i}", pool));
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var pool in _pools)
                await pool.Pool.DisposeAsync();
        }

        public async Task StepAsync(int code, int index)
        {
            var random = new Random(code * 1_000_003 + index);
            string name = Name(random.Next(4));
            bool exists = _volumes.TryGetValue(name, out var bytes);
            switch (random.Next(8))
            {
                case 0 or 1 when !exists:
                {
                    long size = random.Next(1, 21) * (Segment / 4);
                    int copies = random.Next(1, 3);
                    var policy = (PlacementPolicy)random.Next(4);
                    Log.Add($"create {name} {size} x{copies} {policy}");
                    bool done = await CrashableAsync(random, t => t.CreateVolumeAsync(name, size, Segment, new Placement(policy, index), copies));
                    if (done)
                        _volumes[name] = new byte[size];
                    break;
                }
                case 2 when exists:
                {
                    Log.Add($"delete {name}");
                    if (await CrashableAsync(random, t => t.DeleteVolumeAsync(name)))
                    {
                        _volumes.Remove(name);
                        foreach (var key in _snapshots.Keys.Where(k => k.Volume == name).ToList())
                            _snapshots.Remove(key);
                    }
                    break;
                }
                case 3 when exists:
                {
                    long size = random.Next(1, 21) * (Segment / 4);
                    bool shrink = size < bytes!.Length, refused = shrink && _snapshots.Keys.Any(k => k.Volume == name);
                    Log.Add($"resize {name} {bytes.Length} -> {size}{(refused ? " (has snapshots: refused)" : "")}");
                    if (refused)
                    {
                        var refusal = await Record.ExceptionAsync(() => Transactions.ResizeVolumeAsync(name, size, new Placement(PlacementPolicy.RoundRobin, index)));
                        Assert.True(refusal is VolumeException, $"a shrink of a volume with snapshots was not refused ({refusal?.Message ?? "it shrank"})\nafter:\n{string.Join("\n", Log)}");
                        break;
                    }
                    if (await CrashableAsync(random, t => t.ResizeVolumeAsync(name, size, new Placement(PlacementPolicy.LeastLoaded, index))))
                    {
                        var resized = new byte[size];
                        bytes.AsSpan(0, (int)Math.Min(size, bytes.Length)).CopyTo(resized);
                        _volumes[name] = resized;
                    }
                    break;
                }
                case 4 when _volumes.Count > 0:
                {
                    var group = _volumes.Keys.Where(_ => random.Next(2) == 0).DefaultIfEmpty(_volumes.Keys.First()).Order(StringComparer.Ordinal).ToList();
                    string snapshot = $"s{_snapshotNames++}";
                    Log.Add($"snapshot {snapshot} of {string.Join(",", group)}");
                    if (await CrashableAsync(random, t => t.SnapshotGroupAsync(snapshot, group)))
                    {
                        foreach (string volume in group)
                            _snapshots[(volume, snapshot)] = (byte[])_volumes[volume].Clone();
                    }
                    break;
                }
                default:
                {
                    if (!exists)
                        break;
                    long offset = random.NextInt64(bytes!.Length / Block) * Block;
                    var data = new byte[Block];
                    random.NextBytes(data);
                    Log.Add($"write {name} @{offset}");
                    var volume = SpannedVolume.Decode((await cluster.ReadAsync(SpannedVolume.Key(name))).Value.Span);
                    using (var device = new SpannedVolumeDevice(volume, ByName))
                        await device.WriteAsync(offset, data);
                    data.CopyTo(bytes.AsSpan((int)offset));
                    break;
                }
            }
        }

        /// <summary>
        /// Runs one transaction, cut short at a random step one time in three, then recovers; true when it took effect
        /// (it finished, or was cut short after its decision).
        /// </summary>
        private async Task<bool> CrashableAsync(Random random, Func<VolumeTransactions, Task> transaction)
        {
            var transactions = Transactions;
            int crashAt = random.Next(3) == 0 ? random.Next(1, 20) : -1, reached = 0;
            bool decided = false;
            Task Hook(string step)
            {
                decided |= step == "after-decide";
                return Interlocked.Increment(ref reached) == crashAt ? throw new Crash() : Task.CompletedTask;
            }
            transactions.Step = Hook;
            foreach (var pool in _pools)
                pool.Step = Hook;
            var failure = await Record.ExceptionAsync(() => transaction(transactions));
            transactions.Step = null;
            foreach (var pool in _pools)
                pool.Step = null;
            if (failure is not null and not Crash)
                throw new InvalidOperationException("the transaction failed", failure);
            if (failure is Crash)
            {
                Log[^1] += $" (cut short at step {crashAt}, {(decided ? "after" : "before")} the decision)";
                await transactions.RecoverAsync();
                return decided;
            }
            return true;
        }

        /// <summary>Null when the catalogue and the pools match the reference, else what differs.</summary>
        public async Task<string?> CheckAsync()
        {
            if ((await cluster.ListAsync("tx/")).Count > 0)
                return "a transaction is left in the metadata service";
            foreach (var pool in _pools)
            {
                if (pool.Prepared().Count > 0)
                    return $"{pool.Name} holds prepared transactions {string.Join(",", pool.Prepared())}";
                if (pool.Pool.CheckSpace() is { } space)
                    return $"{pool.Name}: {space}";
            }
            var catalogue = (await cluster.ListAsync("spanned/" + prefix)).Select(k => k.Key["spanned/".Length..]).Order(StringComparer.Ordinal).ToList();
            if (!catalogue.SequenceEqual(_volumes.Keys.Order(StringComparer.Ordinal)))
                return $"the catalogue holds [{string.Join(",", catalogue)}], the reference [{string.Join(",", _volumes.Keys.Order(StringComparer.Ordinal))}]";
            var expectedSegments = new HashSet<(string Pool, string Segment)>();
            foreach (var (name, bytes) in _volumes)
            {
                var volume = SpannedVolume.Decode((await cluster.ReadAsync(SpannedVolume.Key(name))).Value.Span);
                if (volume.SizeBytes != bytes.Length)
                    return $"{name} is {volume.SizeBytes} bytes in the catalogue, {bytes.Length} in the reference";
                var snapshots = (await cluster.ListAsync($"spanned-snapshots/{name}/")).Select(k => k.Key[($"spanned-snapshots/{name}/".Length)..]).Order(StringComparer.Ordinal).ToList();
                var expected = _snapshots.Keys.Where(k => k.Volume == name).Select(k => k.Snapshot).Order(StringComparer.Ordinal).ToList();
                if (!snapshots.SequenceEqual(expected))
                    return $"{name} has snapshots [{string.Join(",", snapshots)}] in the catalogue, [{string.Join(",", expected)}] in the reference";
                for (int i = 0; i < volume.Segments.Count; i++)
                {
                    string segment = SpannedVolume.SegmentName(name, i);
                    foreach (string pool in volume.Segments[i])
                    {
                        expectedSegments.Add((pool, segment));
                        var owner = ByName[pool];
                        if (await DiffersAsync(owner.OpenVolume(segment), bytes, i * Segment, volume.SegmentSize(i)) is { } error)
                            return $"{name} segment {i} on {pool}: {error}";
                        foreach (string snapshot in expected)
                        {
                            var taken = _snapshots[(name, snapshot)];
                            if (i * Segment >= taken.Length)
                                continue;   // the volume grew after the snapshot
                            long length = Math.Min(Segment, taken.Length - i * Segment);
                            if (await DiffersAsync(owner.OpenSnapshot(segment, snapshot), taken, i * Segment, length) is { } snapError)
                                return $"{name}@{snapshot} segment {i} on {pool}: {snapError}";
                        }
                    }
                }
            }
            foreach (var pool in _pools)
            {
                foreach (var segment in pool.Pool.ListVolumes())
                {
                    if (!expectedSegments.Contains((pool.Name, segment.Name)))
                        return $"{pool.Name} holds a volume '{segment.Name}' that no catalogue segment names";
                }
            }
            return null;
        }

        private static async Task<string?> DiffersAsync(PoolVolume device, byte[] reference, long start, long length)
        {
            using (device)
            {
                if (device.Capacity < length)
                    return $"{device.Capacity} bytes, want at least {length}";
                var read = new byte[length];
                await device.ReadAsync(0, read);
                int at = read.AsSpan().CommonPrefixLength(reference.AsSpan((int)start, (int)length));
                return at == length ? null : $"byte {start + at} differs";
            }
        }
    }
}
