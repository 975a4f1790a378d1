using Storage.Devices;
using Storage.Metadata;

namespace Storage.Volumes.Tests;

/// <summary>
/// A mirror whose copy fails: the write goes on once the copy is recorded stale in the catalogue; a resync fills the
/// copy again while writers write. Real Paxos in process, real pools; a pool goes down through <see cref="Switchable"/>.
/// </summary>
public sealed class StaleCopyTests() : PoolsInPaxos(3, 64L << 20, Block)
{
    private const long Segment = 2L << 20;
    private const int Block = 4096;

    /// <summary>A pool that can be taken down: opening, I/O and flushes then fail with an I/O error.</summary>
    private sealed class Switchable(LocalSegmentPool inner) : ISegmentPool
    {
        public volatile bool Down;
        public int WritesLeft = int.MaxValue;   // the pool goes down once this many more writes came
        public string Name => inner.Name;

        public ValueTask<IBlockDevice> OpenAsync(string segment, string? snapshot, CancellationToken cancellationToken = default)
            => Down ? throw new BlockDeviceException($"pool {Name} is down") : ValueTask.FromResult<IBlockDevice>(new Copy(this, inner.Open(segment, snapshot)));

        public Task FlushAsync(IReadOnlyList<IBlockDevice> opened, CancellationToken cancellationToken = default)
            => Down ? Task.FromException(new BlockDeviceException($"pool {Name} is down")) : inner.FlushAsync(opened, cancellationToken);

        private sealed class Copy(Switchable pool, IBlockDevice device) : BlockDevice(device.Name, device.Capacity, device.SectorSize)
        {
            private void Check()
            {
                if (pool.Down)
                    throw new BlockDeviceException($"pool {pool.Name} is down");
            }

            protected override async ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
            {
                Check();
                await device.ReadAsync(offset, buffer, cancellationToken);
            }

            protected override async ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
            {
                if (Interlocked.Decrement(ref pool.WritesLeft) < 0)
                    pool.Down = true;
                Check();
                await device.WriteAsync(offset, buffer, forceUnitAccess, cancellationToken);
            }

            protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
            {
                Check();
                await device.TrimAsync(offset, length, cancellationToken);
            }

            protected override ValueTask FlushCoreAsync(CancellationToken cancellationToken) => device.FlushAsync(cancellationToken);

            protected override void Dispose(bool disposing)
            {
                if (disposing)
                    device.Dispose();
                base.Dispose(disposing);
            }
        }
    }

    private Dictionary<string, Switchable> SwitchablePools() => Pools.ToDictionary(p => p.Name, p => new Switchable(new LocalSegmentPool(p.Name, p.Pool)), StringComparer.Ordinal);

    private static async Task WritersAsync(SpannedVolumeDevice device, byte[] model, int seed, CancellationToken stop)
    {
        await Task.WhenAll(Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var random = new Random(seed + w);
            var buffer = new byte[Block];
            for (int n = 0; n < 50 || !stop.IsCancellationRequested; n++)
            {
                long block = random.NextInt64(model.Length / Block / 4) * 4 + w;   // writer w owns blocks ≡ w (mod 4)
                random.NextBytes(buffer);
                await device.WriteAsync(block * Block, buffer);
                buffer.CopyTo(model.AsSpan((int)(block * Block)));
            }
        })));
    }

    private async Task ExpectCopiesAsync(SpannedVolume volume, byte[] model)
    {
        var buffer = new byte[Segment];
        for (int i = 0; i < volume.Segments.Count; i++)
        {
            foreach (string pool in volume.Segments[i])
            {
                using var copy = ByName[pool].OpenVolume(SpannedVolume.SegmentName(volume.Name, i));
                await copy.ReadAsync(0, buffer);
                Assert.True(buffer.AsSpan().SequenceEqual(model.AsSpan((int)(i * Segment), (int)Segment)), $"segment {i} on {pool} differs from what was written");
            }
        }
    }

    [Fact]
    public async Task A_failed_mirror_copy_is_recorded_stale_the_writes_go_on_and_a_resync_under_writers_fills_it_again()
    {
        var volume = await Transactions().CreateVolumeAsync("m", 3 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        var pools = SwitchablePools();
        using var device = await SpannedVolumeDevice.OpenAsync(volume, pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value), ReadPolicy.RoundRobin);
        device.Recorder = new StaleCopies(Cluster);
        var model = new byte[3 * Segment];
        new Random(7).NextBytes(model);
        await device.WriteAsync(0, model);
        await device.FlushAsync();

        string down = volume.Segments[0][1];
        pools[down].Down = true;
        using (var stop = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
            await WritersAsync(device, model, 10, stop.Token);
        await device.FlushAsync();   // the down pool's flush fails too: every copy on it is stale, and the flush still succeeds

        var record = await RecordAsync("m");
        var expected = Enumerable.Range(0, 3).Where(i => volume.Segments[i].Contains(down)).Select(i => new StaleCopy(i, down)).ToList();
        Assert.Equal(expected, record.Stale);
        var read = new byte[model.Length];
        for (int pass = 0; pass < 2; pass++)   // round robin: both copies would be asked if the stale one were read
        {
            await device.ReadAsync(0, read);
            Assert.True(read.AsSpan().SequenceEqual(model), "a read returned bytes other than the last written");
        }
        var refusal = await Assert.ThrowsAsync<VolumeException>(() => Transactions().ResizeVolumeAsync("m", 4 * Segment, new Placement(PlacementPolicy.RoundRobin), 2));
        Assert.Contains("stale", refusal.Message, StringComparison.Ordinal);

        // A sync that read the record before the failure must not make the stale copy readable again.
        await device.AdoptAsync(volume, pools.Where(p => p.Key != down).ToDictionary(p => p.Key, p => (ISegmentPool)p.Value));
        Assert.Equal(expected, device.Volume.Stale);

        pools[down].Down = false;
        using (var stop = new CancellationTokenSource())
        {
            var writers = WritersAsync(device, model, 20, stop.Token);
            long copied = await device.ResyncAsync(pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value));
            await stop.CancelAsync();
            await writers;
            Assert.True(copied > 0);
        }
        await device.FlushAsync();
        Assert.Null((await RecordAsync("m")).Stale);
        Assert.Null(device.Volume.Stale);
        await ExpectCopiesAsync(volume, model);
    }

    [Fact]
    public async Task A_resync_whose_copy_fails_midway_leaves_it_stale_not_resyncing_and_a_later_resync_completes()
    {
        var volume = await Transactions().CreateVolumeAsync("m", Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        var pools = SwitchablePools();
        var segmentPools = pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value);
        using var device = await SpannedVolumeDevice.OpenAsync(volume, segmentPools);
        device.Recorder = new StaleCopies(Cluster);
        var model = new byte[Segment];
        new Random(5).NextBytes(model);
        await device.WriteAsync(0, model);
        string down = volume.Segments[0][1];
        pools[down].Down = true;
        await device.WriteAsync(0, model.AsMemory(0, Block));
        Assert.Equal([new StaleCopy(0, down)], (await RecordAsync("m")).Stale);

        pools[down].Down = false;
        Volatile.Write(ref pools[down].WritesLeft, 1);   // the fill writes one chunk, then the pool goes down again
        await Assert.ThrowsAnyAsync<IOException>(() => device.ResyncAsync(segmentPools));
        Assert.Equal([new StaleCopy(0, down)], (await RecordAsync("m")).Stale);
        Assert.Equal([new StaleCopy(0, down)], device.Volume.Stale);
        await device.WriteAsync(Block, model.AsMemory(Block, Block));   // served by the copy that is current

        pools[down].Down = false;
        Volatile.Write(ref pools[down].WritesLeft, int.MaxValue);
        var refused = await Assert.ThrowsAsync<VolumeException>(() => device.ResyncAsync(segmentPools.Where(p => p.Key == down).ToDictionary()));
        Assert.Contains("which is not here", refused.Message, StringComparison.Ordinal);   // every pool the volume is on is needed, not just the stale one's
        Assert.True(await device.ResyncAsync(segmentPools) > 0);
        Assert.Null((await RecordAsync("m")).Stale);
        await device.FlushAsync();
        await ExpectCopiesAsync(volume, model);
    }

    [Fact]
    public async Task A_stale_copy_on_a_lost_pool_is_replaced_on_another_filled_there_and_the_old_one_is_collected_when_its_pool_is_back()
    {
        var volume = await Transactions().CreateVolumeAsync("m", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        var pools = SwitchablePools();
        var segmentPools = pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value);
        using var device = await SpannedVolumeDevice.OpenAsync(volume, segmentPools, ReadPolicy.RoundRobin);
        device.Recorder = new StaleCopies(Cluster);
        var model = new byte[2 * Segment];
        new Random(11).NextBytes(model);
        await device.WriteAsync(0, model);
        string lost = volume.Segments[0][1];
        pools[lost].Down = true;
        new Random(12).NextBytes(model);
        await device.WriteAsync(0, model);   // the copies on the lost pool are recorded stale by the device itself
        string other = pools.Keys.First(p => !volume.Segments[0].Contains(p));

        var refused = await Assert.ThrowsAsync<VolumeException>(() => Transactions().ReplaceStaleCopyAsync("m", 0, volume.Segments[0][0], other));
        Assert.Contains("is not stale", refused.Message, StringComparison.Ordinal);
        var replaced = await Transactions().ReplaceStaleCopyAsync("m", 0, lost, other);
        Assert.Equal([volume.Segments[0][0], other], replaced.Segments[0]);
        Assert.Equal(new StaleCopy(0, other), replaced.StaleEntry(0, other));

        // The device takes the record although its own last record still has the copy on the lost pool: the new copy
        // is stale (empty), so it is neither read nor written until the resync.
        await device.AdoptAsync(replaced, segmentPools);
        Assert.Equal(new StaleCopy(0, other), device.Volume.StaleEntry(0, other));
        var read = new byte[model.Length];
        for (int pass = 0; pass < 2; pass++)
        {
            await device.ReadAsync(0, read);
            Assert.True(read.AsSpan().SequenceEqual(model), "a read returned bytes of the new, empty copy");
        }
        Assert.True(await device.ResyncAsync(segmentPools.Where(p => p.Key != lost).ToDictionary()) > 0);   // the lost pool is not needed
        Assert.Null((await RecordAsync("m")).StaleEntry(0, other));
        await device.FlushAsync();
        using (var copy = ByName[other].OpenVolume(SpannedVolume.SegmentName("m", 0)))
        {
            var bytes = new byte[Segment];
            await copy.ReadAsync(0, bytes);
            Assert.True(bytes.AsSpan().SequenceEqual(model.AsSpan(0, (int)Segment)), "the new copy does not hold the segment");
        }

        // Back, the lost pool deletes the old copy the catalogue no longer places there, and its record goes.
        pools[lost].Down = false;
        string segment = SpannedVolume.SegmentName("m", 0);
        Assert.True((await Cluster.ReadAsync(Leftovers.Key(lost, segment))).IsOk);
        Assert.Equal([segment], await Leftovers.CollectAsync(Cluster, lost, ByName[lost]));
        Assert.DoesNotContain(ByName[lost].ListVolumes(), v => v.Name == segment);
        Assert.False((await Cluster.ReadAsync(Leftovers.Key(lost, segment))).IsOk);
        Assert.Empty(await Leftovers.CollectAsync(Cluster, lost, ByName[lost]));
    }

    [Fact]
    public async Task A_write_fails_when_no_other_copy_can_take_it_or_the_failure_cannot_be_recorded()
    {
        var volume = await Transactions().CreateVolumeAsync("m", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        var pools = SwitchablePools();
        using var device = await SpannedVolumeDevice.OpenAsync(volume, pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value));
        var block = new byte[Block];
        string down = volume.Segments[0][1];
        pools[down].Down = true;
        await Assert.ThrowsAnyAsync<IOException>(() => device.WriteAsync(0, block).AsTask());   // no recorder

        device.Recorder = new StaleCopies(Cluster);
        pools[volume.Segments[0][0]].Down = true;
        await Assert.ThrowsAnyAsync<IOException>(() => device.WriteAsync(0, block).AsTask());   // both copies down
        Assert.Null((await RecordAsync("m")).Stale);

        pools[volume.Segments[0][0]].Down = false;
        await Cluster.ExecuteAsync(new DeleteCommand(SpannedVolume.Key("m")));
        var failure = await Assert.ThrowsAnyAsync<IOException>(() => device.WriteAsync(0, block).AsTask());   // the record is gone
        Assert.Contains("could not be recorded stale", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_volume_with_a_pool_down_opens_from_the_copies_that_answer_once_they_are_recorded_stale()
    {
        var volume = await Transactions().CreateVolumeAsync("m", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        var pools = SwitchablePools();
        var segmentPools = pools.ToDictionary(p => p.Key, p => (ISegmentPool)p.Value);
        string down = volume.Segments[0][1];
        pools[down].Down = true;
        await Assert.ThrowsAnyAsync<IOException>(() => SpannedVolumeDevice.OpenAsync(volume, segmentPools));
        var unavailable = await SpannedVolumeDevice.UnavailableAsync(volume, segmentPools);
        Assert.Equal(Enumerable.Range(0, 2).Where(i => volume.Segments[i].Contains(down)).Select(i => (i, down)), unavailable);
        var (stale, _) = await new StaleCopies(Cluster).MarkAsync("m", [.. unavailable]);
        using var device = await SpannedVolumeDevice.OpenAsync(stale, segmentPools);
        var data = new byte[Block];
        new Random(3).NextBytes(data);
        await device.WriteAsync(0, data);
        var read = new byte[Block];
        await device.ReadAsync(0, read);
        Assert.Equal(data, read);
    }
}
