namespace Storage.Devices.Tests;

/// <summary>
/// <see cref="FileBlockDevice"/> as <see cref="IAllocationStatus"/>: the holes of a sparse file (SEEK_DATA /
/// SEEK_HOLE) on the temp directory's file system and on /dev/shm (tmpfs), rounded to sectors.
/// </summary>
public class AllocationStatusTests
{
    private const AllocationState HoleZero = AllocationState.Hole | AllocationState.Zero;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public static TheoryData<string> Places => ["temp", "shm"];

    /// <summary>A scratch path on <paramref name="place"/>; the caller deletes it.</summary>
    private static string ScratchFile(string place, TempDirectory temp)
    {
        if (place == "temp")
            return temp.File("sparse.img");
        if (!Directory.Exists("/dev/shm"))
            Requires.Missing("no /dev/shm (tmpfs) on this machine");
        return $"/dev/shm/storage-alloc-{Guid.NewGuid():N}.img";
    }

    private static async Task<List<AllocationExtent>> AllExtentsAsync(FileBlockDevice device, long offset, long length)
    {
        var all = new List<AllocationExtent>();
        for (long done = 0; done < length;)
        {
            var extents = await device.GetAllocationAsync(offset + done, length - done, Ct);
            Assert.NotEmpty(extents);
            foreach (var extent in extents)
            {
                Assert.True(extent.Length > 0 && extent.Length % 512 == 0, $"extent of {extent.Length} bytes");
                all.Add(extent);
                done += extent.Length;
            }
        }
        Assert.Equal(length, all.Sum(e => e.Length));
        return all;
    }

    [Theory]
    [MemberData(nameof(Places))]
    public async Task A_sparse_file_reports_its_holes_and_data_and_a_trim_makes_a_hole(string place)
    {
        using var temp = new TempDirectory();
        string path = ScratchFile(place, temp);
        try
        {
            using var device = FileBlockDevice.Create(path, 1 << 20);
            Assert.Equal([new AllocationExtent(1 << 20, HoleZero)], await AllExtentsAsync(device, 0, 1 << 20));

            await device.WriteAsync(256 << 10, Bytes.Random(64 << 10, 3), cancellationToken: Ct);
            await device.WriteAsync(768 << 10, Bytes.Random(4096, 4), cancellationToken: Ct);
            Assert.Equal(
                [new(256 << 10, HoleZero), new(64 << 10, AllocationState.Data), new(448 << 10, HoleZero), new(4096, AllocationState.Data), new(252 << 10, HoleZero)],
                await AllExtentsAsync(device, 0, 1 << 20));
            // A range starting inside data and ending inside a hole.
            Assert.Equal([new(32 << 10, AllocationState.Data), new(32 << 10, HoleZero)], await AllExtentsAsync(device, 288 << 10, 64 << 10));

            await device.TrimAsync(256 << 10, 32 << 10, Ct);
            Assert.Equal([new(288 << 10, HoleZero), new(32 << 10, AllocationState.Data), new(448 << 10, HoleZero)],
                await AllExtentsAsync(device, 0, 768 << 10));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [MemberData(nameof(Places))]
    public async Task A_preallocated_file_reports_written_space_as_data_and_the_rest_as_zeros(string place)
    {
        using var temp = new TempDirectory();
        string path = ScratchFile(place, temp);
        try
        {
            using var device = FileBlockDevice.Create(path, 1 << 20, preallocate: true);
            await device.WriteAsync(0, Bytes.Random(64 << 10, 9), cancellationToken: Ct);
            var extents = await AllExtentsAsync(device, 0, 1 << 20);
            Assert.Equal(AllocationState.Data, extents[0].State);
            Assert.True(extents[0].Length >= 64 << 10);
            // Space fallocate reserved but nothing wrote is a hole to SEEK_DATA on ext4 and tmpfs (unwritten extents):
            // reported as Hole | Zero, which reads as zeros; never the written range.
            long position = 0;
            var buffer = new byte[64 << 10];
            foreach (var extent in extents)
            {
                if (extent.State != AllocationState.Data)
                {
                    Assert.Equal(HoleZero, extent.State);
                    Assert.True(position >= 64 << 10);
                    await device.ReadAsync(position, buffer.AsMemory(0, (int)Math.Min(buffer.Length, extent.Length)), Ct);
                    Assert.True(buffer.AsSpan(0, (int)Math.Min(buffer.Length, extent.Length)).IndexOfAnyExcept((byte)0) < 0);
                }
                position += extent.Length;
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public async Task Random_writes_are_inside_data_and_holes_read_as_zeros(int seed)
    {
        using var temp = new TempDirectory();
        var random = new Random(seed);
        const long Capacity = 4 << 20;
        using var device = FileBlockDevice.Create(temp.File("random.img"), Capacity);
        var written = new List<(long Offset, int Length)>();
        for (int i = random.Next(1, 20); i > 0; i--)
        {
            long offset = random.NextInt64(Capacity / 512 - 64) * 512;
            int length = random.Next(1, 64) * 512;
            await device.WriteAsync(offset, Bytes.Random(length, seed * 100 + i), cancellationToken: Ct);
            written.Add((offset, length));
        }
        long start = random.NextInt64(Capacity / 512) * 512;
        var extents = await AllExtentsAsync(device, start, Capacity - start);
        long position = start;
        var buffer = new byte[64 << 10];
        foreach (var extent in extents)
        {
            if (extent.State == HoleZero)
            {
                Assert.DoesNotContain(written, w => w.Offset < position + extent.Length && position < w.Offset + w.Length);
                for (long at = position; at < position + extent.Length; at += buffer.Length)
                {
                    int n = (int)Math.Min(buffer.Length, position + extent.Length - at);
                    await device.ReadAsync(at, buffer.AsMemory(0, n), Ct);
                    Assert.True(buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0) < 0, $"a hole at {at} does not read as zeros");
                }
            }
            else
            {
                Assert.Equal(AllocationState.Data, extent.State);
            }
            position += extent.Length;
        }
    }

    [Fact]
    public async Task A_file_of_many_fragments_is_described_in_several_calls()
    {
        using var temp = new TempDirectory();
        const int Blocks = 1500;
        using var device = FileBlockDevice.Create(temp.File("fragmented.img"), Blocks * 8192L);
        var block = Bytes.Random(4096, 11);
        for (int i = 0; i < Blocks; i++)
            await device.WriteAsync(i * 8192L, block, cancellationToken: Ct);
        var first = await device.GetAllocationAsync(0, device.Capacity, Ct);
        Assert.True(first.Sum(e => e.Length) < device.Capacity, "one call should stop early at its extent limit");
        var all = await AllExtentsAsync(device, 0, device.Capacity);
        Assert.Equal(2 * Blocks, all.Count);
        for (int i = 0; i < all.Count; i++)
            Assert.Equal(new AllocationExtent(4096, i % 2 == 0 ? AllocationState.Data : HoleZero), all[i]);
    }

    [Fact]
    public async Task Bad_ranges_are_refused()
    {
        using var temp = new TempDirectory();
        using var device = FileBlockDevice.Create(temp.File("disk.img"), 1 << 20);
        await Assert.ThrowsAsync<ArgumentException>(async () => await device.GetAllocationAsync(100, 512, Ct));
        await Assert.ThrowsAsync<ArgumentException>(async () => await device.GetAllocationAsync(0, 0, Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await device.GetAllocationAsync(1 << 20, 512, Ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await device.GetAllocationAsync(-512, 512, Ct));
    }
}
