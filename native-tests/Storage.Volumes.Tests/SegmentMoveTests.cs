using Storage.Devices;
using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes.Tests;

/// <summary>
/// Online segment moves: begin (a transaction adds the new copy), fill it while writers write, finish (a transaction
/// drops the old copy while the device holds requests for the decision). Real Paxos in process, real pools.
/// </summary>
public sealed class SegmentMoveTests() : PoolsInPaxos(3, 96L << 20, Block)
{
    private const long Segment = 4L << 20;
    private const int Block = 4096;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_segment_moves_while_four_writers_write_and_every_acknowledged_byte_is_on_the_new_pool(int copies)
    {
        var transactions = Transactions();
        var volume = await transactions.CreateVolumeAsync("data", 3 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies);
        using var device = await SpannedVolumeDevice.OpenAsync(volume, Segments);
        string from = volume.Segments[0][0];
        string to = Pools.Select(p => p.Name).First(p => !volume.Segments[0].Contains(p));
        var model = new byte[3 * Segment];
        new Random(1).NextBytes(model.AsSpan(0, (int)Segment));   // segment 0 full of data before the move, the rest written during it
        await device.WriteAsync(0, model.AsMemory(0, (int)Segment));
        await device.FlushAsync();

        // Four writers, each owning the blocks b ≡ w (mod 4), write and trim at random, mostly in segment 0, until the
        // move is done; the model gets each block's bytes once the write is acknowledged.
        using var stop = new CancellationTokenSource();
        long writes = 0;
        async Task WriteAsync(int writer)
        {
            var random = new Random(100 + writer);
            var buffer = new byte[2 * Block];
            while (!stop.IsCancellationRequested)
            {
                long blocks = random.Next(4) == 0 ? model.Length / Block : Segment / Block;
                long block = random.NextInt64(blocks / 4 - 1) * 4 + writer;
                if (random.Next(10) == 0)
                {
                    await device.TrimAsync(block * Block, Block);
                    Array.Clear(model, (int)(block * Block), Block);
                }
                else
                {
                    random.NextBytes(buffer.AsSpan(0, Block));
                    await device.WriteAsync(block * Block, buffer.AsMemory(0, Block));
                    buffer.AsSpan(0, Block).CopyTo(model.AsSpan((int)(block * Block)));
                }
                Interlocked.Increment(ref writes);
            }
        }
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() => WriteAsync(w))).ToArray();

        // Four moves, there and back twice: each fill races the writers again.
        SpannedVolume done = volume;
        long copied = 0, during = 0;
        for (int round = 0; round < 4; round++)
        {
            var started = await transactions.BeginMoveAsync("data", 0, from, to);
            Assert.Equal(new SegmentMove(0, from, to), started.Move);
            Assert.True(await device.AdoptAsync(started, Segments));
            during = Interlocked.Read(ref writes);
            copied = await device.FillAsync();
            done = await transactions.FinishMoveAsync("data", decide: (record, decide) => device.AdoptAsync(record, Segments, decide));
            Assert.True(Interlocked.Read(ref writes) > during, "no write ran during the fill");
            if (round < 3)
                (from, to) = (to, from);
        }
        Assert.InRange(copied, Segment / 2, Segment);   // data only: trimmed blocks are holes
        await Task.Delay(50);
        await stop.CancelAsync();
        await Task.WhenAll(writers);

        Assert.Null(done.Move);
        Assert.Equal(done.Segments[0].Length, copies);
        Assert.DoesNotContain(from, done.Segments[0]);
        Assert.Contains(to, done.Segments[0]);
        Assert.Equal(done.Encode(), (await RecordAsync("data")).Encode());
        var back = new byte[model.Length];
        await device.ReadAsync(0, back);
        Assert.True(model.AsSpan().SequenceEqual(back), "the volume's bytes differ from what was acknowledged");
        // The new pool's copy on its own holds segment 0's bytes; the old pool holds no copy; nothing is staged or leaked.
        using (var moved = Pools.Single(p => p.Name == to).Pool.OpenVolume(SpannedVolume.SegmentName("data", 0)))
        {
            var segment = new byte[Segment];
            await moved.ReadAsync(0, segment);
            Assert.True(model.AsSpan(0, (int)Segment).SequenceEqual(segment), "the moved copy differs");
        }
        Assert.DoesNotContain(Pools.Single(p => p.Name == from).Pool.ListVolumes(), v => v.Name == SpannedVolume.SegmentName("data", 0));
        await CheckAsync();
    }

    [Fact]
    public async Task A_cancelled_move_drops_the_new_copy_and_the_volume_reads_as_before()
    {
        var transactions = Transactions();
        var volume = await transactions.CreateVolumeAsync("data", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        using var device = await SpannedVolumeDevice.OpenAsync(volume, Segments);
        var data = new byte[2 * Segment];
        new Random(2).NextBytes(data);
        await device.WriteAsync(0, data);
        var started = await transactions.BeginMoveAsync("data", 1, null, "pool2");
        await device.AdoptAsync(started, Segments);
        await device.WriteAsync(Segment, data.AsMemory(0, Block));   // reaches both copies while the move is on
        data.AsSpan(0, Block).CopyTo(data.AsSpan((int)Segment));

        var undone = await transactions.FinishMoveAsync("data", cancel: true, decide: (record, decide) => device.AdoptAsync(record, Segments, decide));
        Assert.Null(undone.Move);
        Assert.Equal(volume.Segments.Select(s => string.Join(",", s)), undone.Segments.Select(s => string.Join(",", s)));
        Assert.Empty(Pools[2].Pool.ListVolumes());
        var back = new byte[data.Length];
        await device.ReadAsync(0, back);
        Assert.Equal(data, back);
        await Assert.ThrowsAsync<VolumeException>(() => device.FillAsync());
        await CheckAsync();
    }

    [Fact]
    public async Task Moves_that_cannot_be_done_are_refused_with_the_reason_and_change_nothing()
    {
        var transactions = Transactions();
        var volume = await transactions.CreateVolumeAsync("data", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin), copies: 2);
        async Task<string> RefusedAsync(Func<Task> move) => (await Assert.ThrowsAsync<VolumeException>(move)).Message;

        Assert.Contains("no segment 2", await RefusedAsync(() => transactions.BeginMoveAsync("data", 2, null, "pool2")), StringComparison.Ordinal);
        Assert.Contains("say which one moves with --from", await RefusedAsync(() => transactions.BeginMoveAsync("data", 0, null, "pool2")), StringComparison.Ordinal);
        string other = volume.Segments[0][1], free = Pools.Select(p => p.Name).First(p => !volume.Segments[0].Contains(p));
        Assert.Contains("holds a copy", await RefusedAsync(() => transactions.BeginMoveAsync("data", 0, volume.Segments[0][0], other)), StringComparison.Ordinal);
        Assert.Contains($"not on '{free}'", await RefusedAsync(() => transactions.BeginMoveAsync("data", 0, free, other)), StringComparison.Ordinal);
        Assert.Contains("no pool 'nope'", await RefusedAsync(() => transactions.BeginMoveAsync("data", 0, other, "nope")), StringComparison.Ordinal);
        Assert.Contains("no segment move in progress", await RefusedAsync(() => transactions.FinishMoveAsync("data")), StringComparison.Ordinal);
        Assert.Contains("no volume 'gone'", await RefusedAsync(() => transactions.BeginMoveAsync("gone", 0, null, "pool0")), StringComparison.Ordinal);

        // While a move is on: no other move, resize or snapshot; asking for the same move again is its record.
        var started = await transactions.BeginMoveAsync("data", 0, other, free);
        Assert.Equal(started.Encode(), (await transactions.BeginMoveAsync("data", 0, null, free)).Encode());
        Assert.Contains("is moving segment 0", await RefusedAsync(() => transactions.BeginMoveAsync("data", 1, volume.Segments[1][0], volume.Segments[0][0] == volume.Segments[1][0] ? free : volume.Segments[0][0])), StringComparison.Ordinal);
        Assert.Contains("cannot be resized while segment 0 moves", await RefusedAsync(() => transactions.ResizeVolumeAsync("data", 3 * Segment, new Placement(PlacementPolicy.RoundRobin), 2)), StringComparison.Ordinal);
        Assert.Contains("cannot be snapshotted while segment 0 moves", await RefusedAsync(() => transactions.SnapshotGroupAsync("s1", ["data"])), StringComparison.Ordinal);
        Assert.Equal(2, started.Copies);   // the copy being filled does not count
        await transactions.FinishMoveAsync("data", cancel: true);

        // A volume with snapshots: the snapshots live in the segments' pools and would not follow.
        await transactions.SnapshotGroupAsync("s1", ["data"]);
        Assert.Contains("has snapshots (s1)", await RefusedAsync(() => transactions.BeginMoveAsync("data", 0, other, free)), StringComparison.Ordinal);
        Assert.Null((await RecordAsync("data")).Move);
        await CheckAsync();
    }

    /// <summary>Every step of a one-pool transaction, in the order they run.</summary>
    private static string[] Order(string pool) =>
    [
        "before-begin", "after-begin", $"{pool}:before-prepare", $"{pool}:after-prepare", "after-prepare", "after-decide",
        $"{pool}:before-commit", $"{pool}:after-commit", "before-forget",
    ];

    public static TheoryData<bool, string> Steps => new(Order("X").Select(s => (true, s)).Concat(Order("X").Select(s => (false, s))));

    [Theory]
    [MemberData(nameof(Steps))]
    public async Task A_move_cut_short_at_any_step_of_either_transaction_leaves_the_old_or_the_new_copies_and_can_go_on(bool begin, string step)
    {
        var transactions = Transactions();
        var volume = await transactions.CreateVolumeAsync("data", 2 * Segment, Segment, new Placement(PlacementPolicy.RoundRobin));
        string from = volume.Segments[0][0], to = Pools.Select(p => p.Name).First(p => p != from);
        var data = new byte[Segment];
        new Random(3).NextBytes(data);
        using (var device = await SpannedVolumeDevice.OpenAsync(volume, Segments))
            await device.WriteAsync(0, data);
        if (!begin)
            await FillAsync(await transactions.BeginMoveAsync("data", 0, from, to));
        string pool = begin ? to : from;
        step = step.Replace("X", pool, StringComparison.Ordinal);
        bool decided = Array.IndexOf(Order(pool), step) >= Array.IndexOf(Order(pool), "after-decide");

        Task Hook(string s) => s == step ? throw new CrashException(s) : Task.CompletedTask;
        transactions.Step = Hook;
        foreach (var p in Pools)
            p.Step = Hook;
        var crash = await Record.ExceptionAsync(() => begin ? transactions.BeginMoveAsync("data", 0, from, to) : transactions.FinishMoveAsync("data"));
        Assert.True(crash is CrashException, $"step {step} was never reached ({crash?.Message ?? "the move finished"})");
        transactions.Step = null;
        foreach (var p in Pools)
            p.Step = null;
        await transactions.RecoverAsync();
        await CheckAsync();
        var record = await RecordAsync("data");
        Assert.Equal(begin == decided, record.Move is not null);
        string[] copies = (begin, decided) switch
        {
            (true, false) => [from],          // the begin never happened
            (false, true) => [to],            // the finish happened
            _ => [from, to],                  // the move is in progress
        };
        Assert.Equal(copies, record.Segments[0]);

        // The move goes on from where it stands and ends with segment 0's bytes on the new pool alone.
        if (record.Move is null && begin)
            record = await transactions.BeginMoveAsync("data", 0, from, to);
        if (record.Move is not null)
        {
            await FillAsync(record);
            record = await transactions.FinishMoveAsync("data");
        }
        Assert.Equal([to], record.Segments[0]);
        using (var device = await SpannedVolumeDevice.OpenAsync(record, Segments))
        {
            var back = new byte[Segment];
            await device.ReadAsync(0, back);
            Assert.Equal(data, back);
        }
        await CheckAsync();
    }

    private async Task FillAsync(SpannedVolume moving)
    {
        using var device = await SpannedVolumeDevice.OpenAsync(moving, Segments);
        await device.FillAsync();
    }

    /// <summary>Nothing in doubt or staged; every pool holds exactly the segments the catalogue gives it; space adds up.</summary>
    private async Task CheckAsync()
    {
        Assert.Empty(await Cluster.ListAsync("tx/"));
        var expected = Pools.ToDictionary(p => p.Name, _ => new SortedSet<string>(StringComparer.Ordinal));
        foreach (var key in await Cluster.ListAsync("spanned/"))
        {
            var volume = await RecordAsync(key.Key["spanned/".Length..]);
            for (int i = 0; i < volume.Segments.Count; i++)
            {
                foreach (string pool in volume.Segments[i])
                    expected[pool].Add(SpannedVolume.SegmentName(volume.Name, i));
            }
        }
        foreach (var pool in Pools)
        {
            Assert.Empty(pool.Prepared());
            Assert.Null(pool.Pool.CheckSpace());
            Assert.Equal(expected[pool.Name], pool.Pool.ListVolumes().Select(v => v.Name).Order(StringComparer.Ordinal));
        }
    }
}
