using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>I/O through a volume across pools: split at segment boundaries, mirrored writes, balanced reads, failover.</summary>
public sealed class SpannedVolumeDeviceTests : IAsyncLifetime
{
    private const long Segment = 1L << 20;
    private readonly List<(FaultInjectingDevice Disk, Pool Pool)> _pools = [];

    public async ValueTask InitializeAsync()
    {
        for (int i = 0; i < 3; i++)
        {
            var disk = new FaultInjectingDevice(new MemoryBlockDevice(64L << 20, 512, $"disk{i}"), seed: i);
            _pools.Add((disk, await Pool.CreateAsync(disk, new PoolCreateOptions { Name = $"pool{i}", BlockSize = 4096 }, new PoolOpenOptions { CommitInterval = TimeSpan.Zero })));
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var (_, pool) in _pools)
        {
            try
            {
                await pool.DisposeAsync();
            }
            catch (IOException)
            {
                // A test failed this pool's disk: its last commit cannot be written.
            }
        }
    }

    private Dictionary<string, Pool> ByName => _pools.ToDictionary(p => p.Pool.Name, p => p.Pool);

    private async Task<SpannedVolume> MakeAsync(string name, long size, params string[][] segments)
    {
        var volume = new SpannedVolume(name, size, Segment, segments);
        for (int i = 0; i < segments.Length; i++)
        {
            foreach (string pool in segments[i])
                await ByName[pool].CreateVolumeAsync(SpannedVolume.SegmentName(name, i), volume.SegmentSize(i));
        }
        return volume;
    }

    private static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public async Task Requests_across_segment_boundaries_land_in_each_segments_pool()
    {
        var volume = await MakeAsync("v", 3 * Segment - 4096, ["pool0"], ["pool1"], ["pool2"]);   // the last segment is short
        using var device = new SpannedVolumeDevice(volume, ByName);
        Assert.Equal(3 * Segment - 4096, device.Capacity);
        var data = Random((int)(2 * Segment), 1);
        await device.WriteAsync(Segment / 2, data);   // half of segment 0, all of 1, half of 2
        var back = new byte[data.Length];
        await device.ReadAsync(Segment / 2, back);
        Assert.Equal(data, back);

        using var middle = ByName["pool1"].OpenVolume(SpannedVolume.SegmentName("v", 1));
        var direct = new byte[Segment];
        await middle.ReadAsync(0, direct);
        Assert.Equal(data.AsSpan((int)(Segment / 2), (int)Segment).ToArray(), direct);   // segment 1 is pool1's volume, from its start

        await device.TrimAsync(Segment / 2, Segment);   // the end of segment 0 and the start of segment 1
        await device.FlushAsync();
        await device.ReadAsync(Segment / 2, back);
        Assert.All(back.AsSpan(0, (int)Segment).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(data.AsSpan((int)Segment).ToArray(), back.AsSpan((int)Segment).ToArray());
    }

    [Theory]
    [InlineData(ReadPolicy.RoundRobin)]
    [InlineData(ReadPolicy.Random)]
    [InlineData(ReadPolicy.LeastQueueDepth)]
    public async Task A_mirrored_segment_is_written_to_both_pools_and_its_reads_are_shared(ReadPolicy policy)
    {
        var volume = await MakeAsync("m", Segment, ["pool0", "pool2"]);
        using var device = new SpannedVolumeDevice(volume, ByName, policy);
        var data = Random((int)Segment, 2);
        await device.WriteAsync(0, data);
        foreach (string pool in new[] { "pool0", "pool2" })
        {
            using var copy = ByName[pool].OpenVolume(SpannedVolume.SegmentName("m", 0));
            var held = new byte[Segment];
            await copy.ReadAsync(0, held);
            Assert.Equal(data, held);
        }
        var block = new byte[4096];
        for (int i = 0; i < 400; i++)
            await device.ReadAsync(i % 256 * 4096L, block);
        var served = device.ReadsServed(0);
        Assert.Equal(400, served.Sum());
        Assert.InRange(served[0], policy == ReadPolicy.Random ? 150 : 190, policy == ReadPolicy.Random ? 250 : 210);
    }

    [Fact]
    public async Task A_mirrored_read_fails_over_to_the_other_copy_when_one_pool_cannot_read()
    {
        var volume = await MakeAsync("f", Segment, ["pool0", "pool1"]);
        using var device = new SpannedVolumeDevice(volume, ByName, ReadPolicy.RoundRobin);
        var data = Random((int)Segment, 3);
        await device.WriteAsync(0, data);
        await device.FlushAsync();
        _pools[0].Disk.FailAll();   // pool0's disk is gone
        var back = new byte[Segment];
        for (int i = 0; i < 4; i++)
        {
            await device.ReadAsync(0, back);
            Assert.Equal(data, back);
        }
    }

    [Fact]
    public async Task A_volume_created_by_the_two_phase_commit_opens_as_a_device()
    {
        string root = Path.Combine(Path.GetTempPath(), "volumes-dev-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var cluster = MetadataCluster.Start([.. Enumerable.Range(1, 3).Select(i => Path.Combine(root, $"r{i}"))]);
            await cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(10));
            var participants = _pools.Select(p => new PoolParticipant(p.Pool.Name, p.Pool)).ToList();
            var created = await new VolumeTransactions(cluster, participants).CreateVolumeAsync("db", 5 * Segment, Segment, new Placement(PlacementPolicy.WeightedByFreeSpace), copies: 2);
            var stored = SpannedVolume.Decode((await cluster.ReadAsync(SpannedVolume.Key("db"))).Value.Span);
            Assert.Equal(created.Segments.Select(s => string.Join(",", s)), stored.Segments.Select(s => string.Join(",", s)));
            using var device = new SpannedVolumeDevice(stored, ByName);
            var data = Random((int)(5 * Segment), 4);
            await device.WriteAsync(0, data);
            var back = new byte[data.Length];
            await device.ReadAsync(0, back);
            Assert.Equal(data, back);
        }
        finally
        {
            if (Directory.Exists(root))
                Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void A_record_naming_a_pool_or_segment_that_is_not_there_is_refused()
    {
        var missingPool = new SpannedVolume("x", Segment, Segment, [["nowhere"]]);
        Assert.Contains("pool 'nowhere', which is not here", Assert.Throws<VolumeException>(() => new SpannedVolumeDevice(missingPool, ByName)).Message, StringComparison.Ordinal);
        var missingSegment = new SpannedVolume("x", Segment, Segment, [["pool0"]]);
        Assert.Contains("has no segment 'x.000000'", Assert.Throws<VolumeException>(() => new SpannedVolumeDevice(missingSegment, ByName)).Message, StringComparison.Ordinal);
    }
}
