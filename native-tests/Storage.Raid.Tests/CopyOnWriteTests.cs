using Storage.Devices;

namespace Storage.Raid.Tests;

/// <summary>
/// The entry points a copy-on-write layer uses (RaidArray.CopyOnWrite.cs): whole-stripe writes without the journal,
/// the roles that hold a range, reads that leave suspect members out, and in-place repair of rebuilt data.
/// </summary>
public sealed class CopyOnWriteTests
{
    private const int Chunk = 4096;
    private const long DiskBytes = 2 << 20;

    public static TheoryData<RaidLevel, int, int> RedundantLevels => new()
    {
        { RaidLevel.Raid1, 3, 2 },
        { RaidLevel.Raid5, 4, 1 },
        { RaidLevel.Raid6, 6, 2 },
        { RaidLevel.ReedSolomon, 7, 3 },
    };

    [Theory]
    [MemberData(nameof(ArrayTests.Levels), MemberType = typeof(ArrayTests))]
    public async Task Whole_stripe_writes_read_back_keep_parity_consistent_and_write_each_member_once_per_stripe(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed: 21);
        var array = await test.CreateAsync();
        long stripe = array.Geometry.StripeDataSize;
        long stripes = array.Capacity / stripe;
        await array.WriteFullStripesAsync(0, new byte[stripes * stripe]);   // marks every bitmap region once: what follows counts data writes only
        await array.FlushAsync();
        var journalBefore = JournalRegions(test, array);
        var reference = new byte[array.Capacity];
        var random = new Random(members * 10 + parity);
        for (int step = 0; step < 40; step++)
        {
            long count = random.NextInt64(1, 5);
            long first = random.NextInt64(0, stripes - count + 1);
            var data = Bytes.Random((int)(count * stripe), 100 + step);
            foreach (var fault in test.Faults)
                fault.ResetCounters();
            await array.WriteFullStripesAsync(first * stripe, data, forceUnitAccess: step % 3 == 0);
            data.CopyTo(reference, first * stripe);
            for (int i = 0; i < members; i++)
            {
                Assert.True(test.Faults[i].Writes == count, $"step {step}: member {i} got {test.Faults[i].Writes} writes for {count} whole stripes (one per stripe expected: no journal record)");
                Assert.Equal(0, test.Faults[i].Flushes);
            }
        }
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);
        if (parity > 0)
            Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.FlushAsync();
        Assert.Equal(journalBefore, JournalRegions(test, array));   // no journal slot was written
        await array.StopAsync();
    }

    [Theory]
    [MemberData(nameof(RedundantLevels))]
    public async Task A_whole_stripe_write_over_a_stripe_the_journal_just_updated_goes_through_the_journal_and_survives_a_power_cut(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed: 22);
        var array = await test.CreateAsync();
        long stripe = array.Geometry.StripeDataSize;
        var reference = Bytes.Random((int)array.Capacity, 1);
        await array.WriteFullStripesAsync(0, reference);
        await array.FlushAsync();

        // Stripe 8, journalled once and then pushed out of the ring by as many newer records as there are slots,
        // is written without the journal again; its old record must not come back after the power cut.
        await array.WriteAsync(8 * stripe, Bytes.Random(512, 4));
        for (int i = 0; i < test.JournalSlots; i++)
            await array.WriteAsync(12 * stripe + i * 512, reference.AsMemory((int)(12 * stripe + i * 512), 512));
        foreach (var fault in test.Faults)
            fault.ResetCounters();
        var later = Bytes.Random((int)stripe, 5);
        await array.WriteFullStripesAsync(8 * stripe, later);
        Assert.All(test.Faults.Take(members), f => Assert.Equal(1, f.Writes));
        later.CopyTo(reference, 8 * stripe);

        // Stripe 3 gets a journalled partial update; the full-stripe write right after must not bypass the journal,
        // or replaying that record after the power cut would put its old rows back over the new stripe.
        await array.WriteAsync(3 * stripe + 512, Bytes.Random(1024, 2));
        foreach (var fault in test.Faults)
            fault.ResetCounters();
        var fresh = Bytes.Random((int)(2 * stripe), 3);
        await array.WriteFullStripesAsync(3 * stripe, fresh);           // stripe 3 journalled, stripe 4 not
        Assert.True(test.Faults.Take(members).Sum(f => f.Writes) > 2 * members, "the recently journalled stripe went through the journal");
        fresh.CopyTo(reference, 3 * stripe);

        await array.FlushAsync();
        await test.PowerCutAsync(CrashMode.TearUnflushed);
        var again = await test.AssembleAsync(1);
        Assert.True(again.Assembly!.JournalRecordsReplayed > 0, "the journal still held records to replay");
        var back = new byte[array.Capacity];
        await again.ReadAsync(0, back);
        Assert.Equal(reference, back);
        Assert.Equal(0, (await again.ScrubAsync(repair: false)).Mismatches);
        await again.StopAsync();
    }

    [Theory]
    [MemberData(nameof(ArrayTests.Levels), MemberType = typeof(ArrayTests))]
    public async Task A_range_that_is_not_whole_stripes_is_refused_and_nothing_is_written(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed: 23);
        var array = await test.CreateAsync();
        int stripe = (int)array.Geometry.StripeDataSize;
        foreach (var fault in test.Faults)
            fault.ResetCounters();
        await Assert.ThrowsAsync<ArgumentException>(async () => await array.WriteFullStripesAsync(512, new byte[stripe]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await array.WriteFullStripesAsync(stripe, new byte[stripe - 512]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await array.WriteFullStripesAsync(stripe, new byte[stripe + 512]));
        await Assert.ThrowsAsync<ArgumentException>(async () => await array.WriteFullStripesAsync(stripe / 2, new byte[stripe]));
        Assert.All(test.Faults, f => Assert.Equal(0, f.Writes));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await array.WriteFullStripesAsync(array.Capacity, new byte[stripe]));
        await array.StopAsync();
    }

    [Theory]
    [MemberData(nameof(RedundantLevels))]
    public async Task Whole_stripe_writes_on_a_degraded_array_read_back_and_are_there_after_the_rebuild(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed: 24, extra: 1);
        var array = await test.CreateAsync();
        long stripe = array.Geometry.StripeDataSize;
        var reference = Bytes.Random((int)array.Capacity, 6);
        await array.WriteAsync(0, reference);
        test.Faults[1].FailAll();                                       // dies; the next write to it fails it
        var random = new Random(members);
        for (int step = 0; step < 12; step++)
        {
            long count = random.NextInt64(1, 4);
            long first = random.NextInt64(0, array.Capacity / stripe - count + 1);
            var data = Bytes.Random((int)(count * stripe), 200 + step);
            await array.WriteFullStripesAsync(first * stripe, data);
            data.CopyTo(reference, first * stripe);
        }
        Assert.Equal("faulty", array.Status().Disks.Single(d => d.Role == 1).State);
        var back = new byte[array.Capacity];
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);

        await array.AddAsync(test.WrapOne(members, 1));                // a new disk takes the faulty role and is rebuilt
        await array.WaitForRebuildsAsync();
        Assert.Equal("clean", array.Status().State);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        test.Faults[0].FailAll();                                       // the rebuilt member now carries data
        Array.Clear(back);
        await array.ReadAsync(0, back);
        Assert.Equal(reference, back);
        await array.StopAsync();
    }

    [Theory]
    [MemberData(nameof(ArrayTests.Levels), MemberType = typeof(ArrayTests))]
    [InlineData(RaidLevel.Raid5, 3, 1)]
    [InlineData(RaidLevel.ReedSolomon, 5, 1)]
    public async Task RolesHolding_names_the_members_whose_chunks_hold_the_range(RaidLevel level, int members, int parity)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed: 25);
        var array = await test.CreateAsync();
        var geometry = array.Geometry;
        long stripe = geometry.StripeDataSize;

        // Where each data chunk really lies: write a distinct pattern into it and find the disk that holds it. The
        // stripes are filled with random bytes first, or parity (P = XOR of one non-zero chunk) would match too.
        int stripes = 2 * members;   // every rotation, twice
        await array.WriteAsync(0, Bytes.Random((int)(stripes * stripe), 7));
        var holder = new int[stripes, geometry.DataCount];
        for (int s = 0; s < stripes; s++)
        {
            for (int index = 0; index < geometry.DataCount; index++)
            {
                var pattern = Bytes.Random(Chunk, 1000 * s + index);
                await array.WriteAsync(s * stripe + (long)index * Chunk, pattern);
                await array.FlushAsync();
                long at = geometry.DataOffset + (long)s * Chunk;
                var found = Enumerable.Range(0, members).Where(d => test.Disks[d].Bytes.Slice((int)at, Chunk).SequenceEqual(pattern)).ToArray();
                holder[s, index] = geometry.Level == RaidLevel.Raid1 ? found.Min() : Assert.Single(found);
                Assert.Equal(1UL << holder[s, index], array.RolesHolding(s * stripe + (long)index * Chunk, Chunk));
            }
        }

        // Random ranges against a sector-by-sector computation from the documented layout.
        var random = new Random(members * 10 + parity);
        long sectors = stripes * stripe / 512;
        for (int i = 0; i < 300; i++)
        {
            long start = random.NextInt64(0, sectors);
            long count = random.NextInt64(1, Math.Min(sectors - start, 3 * stripe / 512) + 1);
            ulong expected = 0;
            for (long sector = start; sector < start + count; sector++)
            {
                long s = sector * 512 / stripe;
                int index = (int)(sector * 512 % stripe / Chunk);
                Assert.Equal(holder[s, index], ExpectedHolder(geometry, s, index));
                expected |= 1UL << holder[s, index];
            }
            Assert.True(expected == array.RolesHolding(start * 512, count * 512), $"range {start * 512}+{count * 512}: expected roles {expected:x}, got {array.RolesHolding(start * 512, count * 512):x}");
        }
        Assert.Equal(0UL, array.RolesHolding(stripe, 0));
        await array.StopAsync();
    }

    /// <summary>md left-symmetric: parity on p = n-1 - (s mod n) (and the m-1 members after it), data i on (p + m + i) mod n.</summary>
    private static int ExpectedHolder(ArrayGeometry geometry, long stripe, int index) => geometry.Level switch
    {
        RaidLevel.Raid0 => index,
        RaidLevel.Raid1 => 0,
        _ => (int)((geometry.MemberCount - 1 - stripe % geometry.MemberCount + geometry.ParityCount + index) % geometry.MemberCount),
    };

    [Theory]
    [MemberData(nameof(RedundantLevels))]
    public async Task Bit_rot_on_one_member_is_read_around_when_that_member_is_suspected_and_repaired_in_place(RaidLevel level, int members, int parity)
    {
        var (test, array, reference) = await FilledAsync(level, members, parity, seed: 26);
        long stripe = array.Geometry.StripeDataSize;
        long offset = 5 * stripe + Math.Min(1, array.Geometry.DataCount - 1) * Chunk + 1024;
        ulong roles = array.RolesHolding(offset, 2048);
        int role = Single(roles);
        Rot(test, array, role, 5, 1024 + 100, 900);

        var plain = new byte[3 * stripe];                                // stripes 4 to 6, across the rotten chunk
        await array.ReadAsync(4 * stripe, plain);
        Assert.False(plain.AsSpan().SequenceEqual(reference.AsSpan((int)(4 * stripe), plain.Length)), "a plain read returns the rotten bytes");
        var scrubbed = await array.ScrubAsync(repair: false);
        Assert.Equal(1, scrubbed.Mismatches);

        var good = new byte[plain.Length];
        await array.ReadExcludingAsync(4 * stripe, good, roles);
        Assert.Equal(reference.AsSpan((int)(4 * stripe), good.Length).ToArray(), good);
        var other = (roles << 1 | roles >> (members - 1)) & ((1UL << members) - 1);   // the next role instead: no help
        var wrong = new byte[2048];
        await array.ReadExcludingAsync(offset, wrong, other);
        Assert.NotEqual(reference.AsSpan((int)offset, 2048).ToArray(), wrong);

        await array.RepairDataAsync(4 * stripe, good);
        Array.Clear(plain);
        await array.ReadAsync(4 * stripe, plain);
        Assert.Equal(good, plain);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        var all = new byte[array.Capacity];
        await array.ReadAsync(0, all);
        Assert.Equal(reference, all);
        await array.StopAsync();
    }

    [Theory]
    [MemberData(nameof(RedundantLevels))]
    public async Task A_repair_of_bytes_in_the_middle_of_a_chunk_lands_on_those_bytes_only(RaidLevel level, int members, int parity)
    {
        var (test, array, reference) = await FilledAsync(level, members, parity, seed: 29);
        long stripe = array.Geometry.StripeDataSize;
        long offset = 3 * stripe + 1536;                                 // inside data chunk 0 of stripe 3, not at its start
        int role = Single(array.RolesHolding(offset, 1024));
        Rot(test, array, role, 3, 1536, 1024);
        var good = new byte[1024];
        await array.ReadExcludingAsync(offset, good, 1UL << role);
        Assert.Equal(reference.AsSpan((int)offset, 1024).ToArray(), good);

        await array.RepairDataAsync(offset, good);
        var all = new byte[array.Capacity];
        await array.ReadAsync(0, all);
        Assert.Equal(reference, all);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.StopAsync();
    }

    [Theory]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    [InlineData(RaidLevel.ReedSolomon, 7, 3)]
    public async Task Two_rotten_members_of_one_stripe_are_read_around_when_both_are_suspected(RaidLevel level, int members, int parity)
    {
        var (test, array, reference) = await FilledAsync(level, members, parity, seed: 27);
        long stripe = array.Geometry.StripeDataSize;
        long offset = 7 * stripe;                                        // data chunks 0 and 1 of stripe 7
        int first = Single(array.RolesHolding(offset, Chunk)), second = Single(array.RolesHolding(offset + Chunk, Chunk));
        Rot(test, array, first, 7, 0, Chunk);
        Rot(test, array, second, 7, 0, Chunk);
        var expected = reference.AsSpan((int)offset, 2 * Chunk).ToArray();

        var read = new byte[2 * Chunk];
        await array.ReadAsync(offset, read);
        Assert.NotEqual(expected, read);
        await array.ReadExcludingAsync(offset, read, 1UL << first);       // the other rotten chunk spoils the rebuild
        Assert.NotEqual(expected[..Chunk], read[..Chunk]);
        await array.ReadExcludingAsync(offset, read, array.RolesHolding(offset, 2 * Chunk));
        Assert.Equal(expected, read);

        await array.RepairDataAsync(offset, read);
        Array.Clear(read);
        await array.ReadAsync(offset, read);
        Assert.Equal(expected, read);
        Assert.Equal(0, (await array.ScrubAsync(repair: false)).Mismatches);
        await array.StopAsync();
    }

    [Theory]
    [InlineData(RaidLevel.Raid1, 3, 2)]
    [InlineData(RaidLevel.Raid5, 4, 1)]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    [InlineData(RaidLevel.ReedSolomon, 7, 3)]
    [InlineData(RaidLevel.Raid0, 3, 0)]
    public async Task More_suspects_than_parity_cannot_be_read_around(RaidLevel level, int members, int parity)
    {
        var (_, array, reference) = await FilledAsync(level, members, parity, seed: 28);
        long stripe = array.Geometry.StripeDataSize;
        ulong suspects = (1UL << (parity + 1)) - 1;                     // roles 0..m: one more than parity rebuilds
        ulong roles = array.RolesHolding(2 * stripe, stripe);
        Assert.NotEqual(0UL, roles & suspects);
        await Assert.ThrowsAsync<ArrayFailedException>(async () => await array.ReadExcludingAsync(2 * stripe, new byte[stripe], suspects));
        var exactly = new byte[stripe];
        if (parity > 0)
        {
            await array.ReadExcludingAsync(2 * stripe, exactly, suspects >> 1);   // m suspects: still fine
            Assert.Equal(reference.AsSpan((int)(2 * stripe), (int)stripe).ToArray(), exactly);
        }
        await array.StopAsync();
    }

    [Theory]
    [InlineData(RaidLevel.Raid6, 6, 2)]
    [InlineData(RaidLevel.ReedSolomon, 7, 3)]
    public async Task A_suspect_is_left_out_of_rebuilding_the_chunks_of_a_missing_member_too(RaidLevel level, int members, int parity)
    {
        var (test, array, reference) = await FilledAsync(level, members, parity, seed: 29);
        long stripe = array.Geometry.StripeDataSize;
        long offset = 9 * stripe;
        int gone = Single(array.RolesHolding(offset, Chunk)), rotten = Single(array.RolesHolding(offset + Chunk, Chunk));
        await array.FailAsync(gone);
        await array.FlushAsync();
        Rot(test, array, rotten, 9, 0, Chunk);
        var expected = reference.AsSpan((int)offset, 2 * Chunk).ToArray();

        var read = new byte[2 * Chunk];
        await array.ReadAsync(offset, read);
        Assert.NotEqual(expected[..Chunk], read[..Chunk]);   // the missing chunk rebuilt from rotten bytes
        await array.ReadExcludingAsync(offset, read, 1UL << rotten);
        Assert.Equal(expected, read);
        await array.StopAsync();
    }

    /// <summary>An array whose every byte is written (random) and flushed, so the memory disks hold it.</summary>
    private static async Task<(TestArray Test, RaidArray Array, byte[] Reference)> FilledAsync(RaidLevel level, int members, int parity, int seed)
    {
        var test = new TestArray(level, members, parity, Chunk, DiskBytes, seed);
        var array = await test.CreateAsync();
        var reference = Bytes.Random((int)array.Capacity, seed);
        await array.WriteAsync(0, reference);
        await array.FlushAsync();
        return (test, array, reference);
    }

    /// <summary>Bit rot under the array: flips bytes of <paramref name="role"/>'s chunk of a stripe on its memory disk.</summary>
    private static void Rot(TestArray test, RaidArray array, int role, long stripe, int inChunk, int length)
    {
        Assert.Equal(0, test.Faults[role].UnflushedSectors);   // else reads would still see the cached bytes
        var bytes = test.Disks[role].Bytes.Slice((int)(array.Geometry.DataOffset + stripe * Chunk + inChunk), length);
        for (int i = 0; i < bytes.Length; i++)
            bytes[i] ^= (byte)(0x5A + i);
    }

    private static int Single(ulong roles)
    {
        Assert.Equal(1, System.Numerics.BitOperations.PopCount(roles));
        return System.Numerics.BitOperations.TrailingZeroCount(roles);
    }

    /// <summary>Every member's journal slots as they lie on its memory disk.</summary>
    private static byte[][] JournalRegions(TestArray test, RaidArray array)
    {
        var status = array.Status();
        if (status.JournalOffset is not { } offset)
            return [];
        return [.. test.Disks.Take(test.MemberCount).Select(d => d.Bytes.Slice((int)offset, (int)status.JournalBytes).ToArray())];
    }
}
