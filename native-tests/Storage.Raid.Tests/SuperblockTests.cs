using Storage.Native;
using System.Buffers.Binary;

namespace Storage.Raid.Tests;

public class SuperblockTests
{
    private static Superblock Sample(ulong sequence) => new()
    {
        ArrayId = Guid.NewGuid(),
        MemberId = Guid.NewGuid(),
        Sequence = sequence,
        Events = 42,
        Geometry = new ArrayGeometry(RaidLevel.Raid6, 6, 2, 65536, 2 << 20, 64 << 20),
        JournalOffset = 65536,
        JournalSlots = 16,
        Role = 3,
        Clean = true,
        Name = "tank",
        Roles = [.. Enumerable.Range(0, 6).Select(i => new RoleRecord(Guid.NewGuid(), i == 2 ? MemberState.Rebuilding : MemberState.Active, i == 2 ? 77 : 0))],
        BadBlocks = [(4096, 512)],
    };

    [Fact]
    public void Round_trips_every_field()
    {
        var written = Sample(7);
        var block = new byte[Superblock.Size];
        written.WriteTo(block);
        Assert.Equal(Superblock.ParseResult.Valid, Superblock.TryParse(block, out var read));
        Assert.Equal(written.ArrayId, read!.ArrayId);
        Assert.Equal(written.Geometry, read.Geometry);
        Assert.Equal(written.Roles, read.Roles);
        Assert.Equal(written.BadBlocks, read.BadBlocks);
        Assert.Equal((written.Name, written.Events, written.Role, written.Clean, written.JournalSlots), (read.Name, read.Events, read.Role, read.Clean, read.JournalSlots));
    }

    [Fact]
    public void A_torn_newer_copy_falls_back_to_the_older_one()
    {
        var disk = new byte[MemberLabel.InspectBytes];
        Sample(4).WriteTo(disk.AsSpan(0));
        Sample(5).WriteTo(disk.AsSpan(Superblock.Size));
        Assert.Equal(5ul, MemberLabel.Inspect(disk).Superblock!.Sequence);
        disk[Superblock.Size + 100] ^= 1;   // the newer copy is damaged
        Assert.Equal(4ul, MemberLabel.Inspect(disk).Superblock!.Sequence);
    }

    [Fact]
    public void Newer_formats_and_foreign_signatures_are_recognised()
    {
        var disk = new byte[MemberLabel.InspectBytes];
        Sample(1).WriteTo(disk);
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(8), Superblock.CurrentFormat + 1);
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(Superblock.Size - 4), Crc32C.Compute(disk.AsSpan(0, Superblock.Size - 4)));
        Assert.Equal(DiskContent.NewerMember, MemberLabel.Inspect(disk).Content);

        var ext4 = new byte[MemberLabel.InspectBytes];
        BinaryPrimitives.WriteUInt16LittleEndian(ext4.AsSpan(1080), 0xEF53);
        Assert.Equal((DiskContent.Foreign, "an ext2/3/4 filesystem"), (MemberLabel.Inspect(ext4).Content, MemberLabel.Inspect(ext4).Description));

        var data = new byte[MemberLabel.InspectBytes];
        data[70000] = 1;
        Assert.Equal(DiskContent.UnknownData, MemberLabel.Inspect(data).Content);
        Assert.Equal(DiskContent.Blank, MemberLabel.Inspect(new byte[MemberLabel.InspectBytes]).Content);
    }

    [Fact]
    public void Crc32c_matches_the_standard_check_value()
        => Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
}
