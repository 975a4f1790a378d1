using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>
/// Crash consistency: an array takes batches of writes and flushes; at a seeded device operation every member
/// loses power (un-flushed sectors torn), then up to m members fail for good. The array assembled from what is
/// left must return every acknowledged write exactly, old-or-new bytes for the write that was cut off, and
/// consistent parity. Seeds: STORAGE_CRASH_SEEDS (count per level, default 500); STORAGE_CRASH_SEED replays one.
/// </summary>
public class CrashTests(ITestOutputHelper output)
{
    private const int Chunk = 4096;

    public static TheoryData<RaidLevel, int, int> Levels => new()
    {
        { RaidLevel.Raid1, 3, 2 },
        { RaidLevel.Raid5, 4, 1 },
        { RaidLevel.Raid6, 6, 2 },
        { RaidLevel.ReedSolomon, 6, 3 },
    };

    [Theory]
    [MemberData(nameof(Levels))]
    public async Task No_acknowledged_write_is_lost_and_no_parity_is_wrong_after_a_crash_and_a_member_failure(RaidLevel level, int members, int parity)
        => await AllSeedsPassAsync(Seeds(), seed => RunAsync(level, members, parity, seed), $"crash seeds failed for {level}; replay one with STORAGE_CRASH_SEED=<seed>");

    /// <summary>
    /// The same with up to four non-overlapping writes in flight at once, so journal records overlap and share
    /// flushes (group commit). Thread timing varies, so a seed replays only approximately.
    /// </summary>
    [Theory]
    [MemberData(nameof(Levels))]
    public async Task Concurrent_writes_survive_a_crash_too(RaidLevel level, int members, int parity)
        => await AllSeedsPassAsync(Seeds().Take(150), seed => RunAsync(level, members, parity, seed, concurrency: 4), $"concurrent crash seeds failed for {level}");

    /// <summary>The same with the journal on a device of its own, which loses power with the members.</summary>
    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 1)]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    public async Task The_journal_on_its_own_device_survives_a_crash_and_member_failures_too(RaidLevel level, int members, int parity)
        => await AllSeedsPassAsync(Seeds().Take(300), seed => RunAsync(level, members, parity, seed, concurrency: seed % 2 == 0 ? 4 : 1, separateJournal: true),
            $"crash seeds with a journal device failed for {level}; replay one with STORAGE_CRASH_SEED=<seed>");

    /// <summary>
    /// Without the journal, with the write-intent bitmap and no member lost: assembly resyncs the marked regions, so no
    /// stripe is left with parity that disagrees with its data.
    /// </summary>
    [Theory]
    [InlineData(RaidLevel.Raid5, 4, 1)]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    public async Task Without_the_journal_the_bitmap_resync_leaves_every_stripe_consistent(RaidLevel level, int members, int parity)
        => await AllSeedsPassAsync(Seeds().Take(300), seed => RunAsync(level, members, parity, seed, journal: false, concurrency: seed % 2 == 0 ? 4 : 1, maxGone: 0),
            $"crash seeds without the journal left wrong parity for {level}; replay one with STORAGE_CRASH_SEED=<seed>");

    [Fact]
    public async Task The_checker_catches_wrong_parity_left_without_the_bitmap()
    {
        int caught = 0;
        for (int seed = 1; seed <= 300 && caught == 0; seed++)
            caught += (await RunAsync(RaidLevel.Raid5, 4, 1, seed, journal: false, concurrency: 4, maxGone: 0, bitmap: false))?.Contains("wrong parity", StringComparison.Ordinal) == true ? 1 : 0;
        Assert.True(caught > 0, "no seed left a stripe inconsistent without journal and bitmap: the check cannot tell");
    }

    /// <summary>Runs every seed, prints the first failures and fails with how many there were.</summary>
    private async Task AllSeedsPassAsync(IEnumerable<int> seeds, Func<int, Task<string?>> run, string what)
    {
        var failures = new List<string>();
        foreach (int seed in seeds)
        {
            if (await run(seed) is { } failure)
                failures.Add($"seed {seed}: {failure}");
        }
        foreach (var failure in failures.Take(10))
            output.WriteLine(failure);
        Assert.True(failures.Count == 0, $"{failures.Count} {what}. First: {failures.FirstOrDefault()}");
    }

    /// <summary>
    /// A stale journal record must not be replayed over newer data. RAID-5 on four members, two journal slots:
    /// X and then Y update the same chunk (members 0 and 3); record 3 reuses X's slot on members 1 and 2 only, so X's
    /// parts survive intact; record 4 reuses Y's slot on member 3. After a power cut, replaying X (complete, but older
    /// than Y, which is already home) would bring back X's bytes.
    /// </summary>
    [Fact]
    public async Task A_stale_but_complete_journal_record_is_not_replayed()
    {
        var test = new TestArray(RaidLevel.Raid5, 4, 1, Chunk, (1 << 20) + (256 << 10), seed: 1) { JournalSlots = 2 };
        var array = await test.CreateAsync();
        var x = Bytes.Random(512, 1);
        var y = Bytes.Random(512, 2);
        long stripe = array.Geometry.StripeDataSize;
        await array.WriteAsync(0, x);                                  // 1: stripe 0, data 0 (member 0) + P (member 3)
        await array.WriteAsync(0, y);                                  // 2: the same chunk again
        await array.WriteAsync(stripe + 2 * Chunk, Bytes.Random(512, 3)); // 3: stripe 1, data 2 (member 1) + P (member 2)
        await array.WriteAsync(Chunk, Bytes.Random(512, 4));          // 4: stripe 0, data 1 (member 1) + P (member 3)
        await test.PowerCutAsync(CrashMode.DropUnflushed);
        var again = await test.AssembleAsync(1);
        output.WriteLine($"replayed {again.Assembly!.JournalRecordsReplayed}, discarded {again.Assembly.JournalRecordsDiscarded}");
        var back = new byte[512];
        await again.ReadAsync(0, back);
        Assert.Equal(y, back);
        await again.StopAsync();
    }

    [Fact]
    public async Task The_checker_catches_a_lost_acknowledged_write()
    {
        // Without the journal a torn stripe plus a failed member loses acknowledged data; the same harness must see it.
        int caught = 0;
        for (int seed = 1; seed <= 200 && caught == 0; seed++)
            caught += await RunAsync(RaidLevel.Raid5, 4, 1, seed, journal: false) is null ? 0 : 1;
        Assert.True(caught > 0, "no seed lost data without the journal: the crash harness cannot tell");
    }

    private static IEnumerable<int> Seeds()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("STORAGE_CRASH_SEED"), out int one))
            return [one];
        int count = int.TryParse(Environment.GetEnvironmentVariable("STORAGE_CRASH_SEEDS"), out int n) ? n : 500;
        return Enumerable.Range(1, count);
    }

    /// <summary>One seeded run; null when every check passed, else what went wrong.</summary>
    private static async Task<string?> RunAsync(RaidLevel level, int members, int parity, int seed, bool journal = true, int concurrency = 1, bool separateJournal = false, int? maxGone = null, bool bitmap = true)
    {
        var random = new Random(seed);
        var test = new TestArray(level, members, parity, Chunk, (1 << 20) + (256 << 10), seed, separateJournal: separateJournal) { Bitmap = bitmap, BitmapRegionBytes = 64 << 10 };
        var array = await test.CreateAsync(journal: journal);
        long capacity = array.Capacity;
        var durable = Bytes.Random((int)capacity, seed);   // what every acknowledged write has made of the array
        await array.WriteAsync(0, durable);
        await array.FlushAsync();

        var trigger = new CrashTrigger(test, random.Next(1, 400));
        test.BeforeCall = trigger.Tick;
        var cutOff = new List<(long Offset, byte[] Data)>();
        // Without the journal a write is durable only once flushed: until then a crash may keep its bytes or not.
        bool durableOnFlush = !journal && maxGone == 0;
        var unflushed = new List<(long Offset, byte[] Data)>();
        for (int batch = 0; batch < 40 && !trigger.Fired; batch++)
        {
            if (random.Next(5) == 0)
            {
                try
                {
                    await array.FlushAsync();
                    foreach (var (offset, data) in unflushed)
                        data.CopyTo(durable, offset);
                    unflushed.Clear();
                }
                catch (IOException) when (trigger.Fired)
                {
                }
                continue;
            }
            // Up to `concurrency` writes at once, never overlapping each other.
            var writes = new List<(long Offset, byte[] Data)>();
            for (int i = 0, count = random.Next(1, concurrency + 1); i < count; i++)
            {
                int length = random.Next(1, 3 * Chunk / 512 + 1) * 512;
                long offset = random.NextInt64(0, (capacity - length) / 512 + 1) * 512;
                if (writes.All(w => offset + length <= w.Offset || w.Offset + w.Data.Length <= offset))
                    writes.Add((offset, Bytes.Random(length, seed * 100 + batch * 8 + i)));
            }
            var tasks = writes.Select(w => Task.Run(async () => await array.WriteAsync(w.Offset, w.Data))).ToArray();
            for (int i = 0; i < tasks.Length; i++)
            {
                try
                {
                    await tasks[i];
                    if (durableOnFlush)
                        unflushed.Add(writes[i]);
                    else
                        writes[i].Data.CopyTo(durable, writes[i].Offset);   // acknowledged
                }
                catch (IOException) when (trigger.Fired)
                {
                    cutOff.Add(writes[i]);
                }
            }
        }
        if (!trigger.Fired)
            await trigger.CrashAsync();
        cutOff.AddRange(unflushed);
        test.BeforeCall = null;

        // Power back; then up to m members never return.
        var gone = Enumerable.Range(0, members).OrderBy(_ => random.Next()).Take(random.Next(0, (maxGone ?? parity) + 1)).ToArray();
        RaidArray again;
        try
        {
            again = await test.AssembleAsync(1, gone);
        }
        catch (Exception e) when (e is ArrayConfigurationException or IOException)
        {
            return $"assembly failed: {e.Message}";
        }
        try
        {
            var back = new byte[capacity];
            await again.ReadAsync(0, back);
            for (long sector = 0; sector < capacity; sector += 512)
            {
                var got = back.AsSpan((int)sector, 512);
                if (got.SequenceEqual(durable.AsSpan((int)sector, 512)))
                    continue;
                bool fromCutOff = false;
                foreach (var (offset, data) in cutOff)
                    fromCutOff |= sector >= offset && sector < offset + data.Length && got.SequenceEqual(data.AsSpan((int)(sector - offset), 512));
                if (!fromCutOff)
                    return $"sector {sector / 512} holds neither the acknowledged bytes nor the cut-off write's (crash at call {trigger.Target}, members gone: [{string.Join(",", gone)}])";
            }
            if (gone.Length == 0)
            {
                var scrub = await again.ScrubAsync(repair: false);
                if (scrub.Mismatches > 0)
                    return $"{scrub.Mismatches} stripes with wrong parity after assembly (crash at call {trigger.Target})";
            }
            return null;
        }
        finally
        {
            await again.StopAsync();
        }
    }

    /// <summary>Cuts the power of every disk (<see cref="TestArray.PowerCutAsync"/>) at the n-th device call (reads, writes, flushes) after arming.</summary>
    private sealed class CrashTrigger(TestArray test, int target)
    {
        private int _calls;
        private volatile bool _fired;

        public int Target => target;

        public bool Fired => _fired;

        public void Tick()
        {
            if (Interlocked.Increment(ref _calls) == target)
                CrashAsync().GetAwaiter().GetResult();
        }

        public async Task CrashAsync()
        {
            _fired = true;
            await test.PowerCutAsync(CrashMode.TearUnflushed);
        }
    }
}
