using Storage.Devices;
using Storage.Raid.Tests;

namespace Storage.Versioning.Tests;

/// <summary>Send and receive: full plus incrementals reproduce the source; bad streams change nothing.</summary>
public class PoolSendTests
{
    private static readonly PoolOpenOptions Manual = new() { CommitInterval = TimeSpan.Zero };

    private static async Task<Pool> NewPoolAsync(string name) =>
        await Pool.CreateAsync(new MemoryBlockDevice(64L << 20, 512, name), new PoolCreateOptions { Name = name }, Manual);

    private static async Task<byte[]> ReadAllAsync(PoolVolume device)
    {
        var bytes = new byte[device.Capacity];
        await device.ReadAsync(0, bytes);
        return bytes;
    }

    [Fact]
    public async Task Full_and_two_incrementals_reproduce_the_source_byte_for_byte()
    {
        await using var source = await NewPoolAsync("src");
        await using var target = await NewPoolAsync("dst");
        await source.CreateVolumeAsync("v", 8L << 20);
        var random = new Random(11);
        using var volume = source.OpenVolume("v");
        var streams = new List<byte[]>();
        string? previous = null;
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 40; i++)
            {
                int length = random.Next(1, 200) * 512;
                long offset = random.NextInt64((volume.Capacity - length) / 512) * 512;
                if (random.Next(5) == 0)
                    await volume.TrimAsync(offset, length);
                else
                    await volume.WriteAsync(offset, Bytes.Random(length, random.Next()));
            }
            string name = $"s{round}";
            await source.CreateSnapshotAsync("v", name);
            using var stream = new MemoryStream();
            var sent = await source.SendAsync("v", name, previous, stream);
            Assert.Equal(previous is null ? null : $"v@{previous}", sent.Base);
            streams.Add(stream.ToArray());
            var received = await target.ReceiveAsync(new MemoryStream(stream.ToArray()), "copy");
            Assert.Equal(sent.Blocks, received.Blocks);
            using var original = source.OpenSnapshot("v", name);
            using var copy = target.OpenSnapshot("copy", name);
            Assert.Equal(await ReadAllAsync(original), await ReadAllAsync(copy));
            using var head = target.OpenVolume("copy");
            Assert.Equal(await ReadAllAsync(original), await ReadAllAsync(head));
            previous = name;
        }
        // Incrementals send only what changed: far less than the full stream.
        Assert.True(streams[2].Length < streams[0].Length, $"incremental {streams[2].Length} bytes, full {streams[0].Length}");
        Assert.Null(target.CheckSpace());
    }

    [Fact]
    public async Task A_corrupted_or_truncated_stream_changes_nothing()
    {
        await using var source = await NewPoolAsync("src");
        await using var target = await NewPoolAsync("dst");
        await source.CreateVolumeAsync("v", 4L << 20);
        using (var volume = source.OpenVolume("v"))
            await volume.WriteAsync(0, Bytes.Random(1 << 20, 3));
        await source.CreateSnapshotAsync("v", "a");
        using var stream = new MemoryStream();
        await source.SendAsync("v", "a", null, stream);
        var good = stream.ToArray();
        long usedBefore = target.GetStatus().UsedBytes;

        var flipped = (byte[])good.Clone();
        flipped[good.Length / 2] ^= 0x40;
        await Assert.ThrowsAsync<SendStreamException>(() => target.ReceiveAsync(new MemoryStream(flipped)));
        await Assert.ThrowsAsync<SendStreamException>(() => target.ReceiveAsync(new MemoryStream(good[..(good.Length - 3)])));
        await Assert.ThrowsAsync<SendStreamException>(() => target.ReceiveAsync(new MemoryStream(good[..100])));
        Assert.Empty(target.ListVolumes());
        Assert.Equal(usedBefore, target.GetStatus().UsedBytes);
        Assert.Null(target.CheckSpace());

        // The good stream still goes in afterwards.
        await target.ReceiveAsync(new MemoryStream(good));
        Assert.Single(target.ListVolumes());
    }

    [Fact]
    public async Task A_flipped_bit_anywhere_in_the_header_records_or_trailer_is_refused_and_changes_nothing()
    {
        await using var source = await NewPoolAsync("src");
        await using var target = await NewPoolAsync("dst");
        await source.CreateVolumeAsync("v", 4L << 20);
        using (var volume = source.OpenVolume("v"))
            await volume.WriteAsync(0, Bytes.Random(256 << 10, 5));   // 16 blocks
        await source.CreateSnapshotAsync("v", "a");
        using var stream = new MemoryStream();
        await source.SendAsync("v", "a", null, stream);
        var good = stream.ToArray();
        long usedBefore = target.GetStatus().UsedBytes;

        // The header (fixed part, body, its CRC), the seams between records (kind, block number, data edges, CRC),
        // and the trailer: every byte, with two different bits.
        int headerEnd = 16 + BitConverter.ToInt32(good, 12) + 4, record = 1 + 1 + source.BlockSize + 4;
        var positions = Enumerable.Range(0, headerEnd + 8)
            .Concat(Enumerable.Range(1, 15).SelectMany(r => Enumerable.Range(headerEnd + r * record - 6, 12)))
            .Concat(Enumerable.Range(good.Length - 12, 12))
            .Where(p => p >= 0 && p < good.Length).Distinct();
        foreach (int position in positions)
        {
            foreach (byte bit in new byte[] { 0x01, 0x40 })
            {
                var flipped = (byte[])good.Clone();
                flipped[position] ^= bit;
                var refused = await Record.ExceptionAsync(() => target.ReceiveAsync(new MemoryStream(flipped)));
                Assert.True(refused is SendStreamException, $"byte {position} ^ 0x{bit:x2}: {refused?.GetType().Name ?? "accepted"} {refused?.Message}");
            }
        }
        Assert.Empty(target.ListVolumes());
        Assert.Equal(usedBefore, target.GetStatus().UsedBytes);
        Assert.Null(target.CheckSpace());
        await target.ReceiveAsync(new MemoryStream(good));
        Assert.Single(target.ListVolumes());
    }

    [Fact]
    public async Task An_incremental_needs_its_base_and_an_unchanged_target()
    {
        await using var source = await NewPoolAsync("src");
        await using var target = await NewPoolAsync("dst");
        await source.CreateVolumeAsync("v", 4L << 20);
        using var volume = source.OpenVolume("v");
        await volume.WriteAsync(0, Bytes.Random(64 << 10, 1));
        await source.CreateSnapshotAsync("v", "a");
        await volume.WriteAsync(0, Bytes.Random(64 << 10, 2));
        await source.CreateSnapshotAsync("v", "b");
        using var full = new MemoryStream();
        await source.SendAsync("v", "a", null, full);
        using var incremental = new MemoryStream();
        await source.SendAsync("v", "b", "a", incremental);

        // Without the base: refused.
        var refused = await Assert.ThrowsAsync<SendStreamException>(() => target.ReceiveAsync(new MemoryStream(incremental.ToArray())));
        Assert.Contains("Receive the full stream first", refused.Message, StringComparison.Ordinal);
        await target.ReceiveAsync(new MemoryStream(full.ToArray()));
        // The target changed since its base: refused until rolled back.
        using (var copy = target.OpenVolume("v"))
            await copy.WriteAsync(0, new byte[4096].Select(_ => (byte)1).ToArray());
        await Assert.ThrowsAsync<SendStreamException>(() => target.ReceiveAsync(new MemoryStream(incremental.ToArray())));
        await target.RollbackAsync("v", "a");
        await target.ReceiveAsync(new MemoryStream(incremental.ToArray()));
        using var theirs = source.OpenSnapshot("v", "b");
        using var ours = target.OpenVolume("v");
        Assert.Equal(await ReadAllAsync(theirs), await ReadAllAsync(ours));
    }
}
