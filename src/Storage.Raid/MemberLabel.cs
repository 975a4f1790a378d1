using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Storage.Devices;

namespace Storage.Raid;

/// <summary>What the start of a disk holds, as creation and assembly see it.</summary>
public enum DiskContent
{
    /// <summary>Zeros: free to use.</summary>
    Blank,

    /// <summary>A superblock of this format.</summary>
    Member,

    /// <summary>A superblock of a newer format: never overwritten without force.</summary>
    NewerMember,

    /// <summary>Another program's signature (filesystem, partition table, md, LVM, …).</summary>
    Foreign,

    /// <summary>No known signature but not zeros: something was written there.</summary>
    UnknownData,
}

/// <summary>The result of reading a disk's label: content kind, the current superblock if any, and a description.</summary>
public sealed record DiskLabel(DiskContent Content, Superblock? Superblock, string Description);

/// <summary>Reads and writes member superblocks and recognises foreign signatures.</summary>
public static class MemberLabel
{
    /// <summary>Bytes at the start of a member inspected for signatures and superblocks.</summary>
    public const int InspectBytes = 128 * 1024;

    /// <summary>Reads both superblock copies and looks for foreign signatures.</summary>
    public static async Task<DiskLabel> ReadAsync(IBlockDevice device, CancellationToken cancellationToken = default)
    {
        int length = (int)Math.Min(InspectBytes, device.Capacity);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            await device.ReadAsync(0, buffer.AsMemory(0, length), cancellationToken).ConfigureAwait(false);
            return Inspect(buffer.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Classifies the first bytes of a disk.</summary>
    public static DiskLabel Inspect(ReadOnlySpan<byte> start)
    {
        Superblock? best = null;
        bool newer = false, damaged = false;
        for (int copy = 0; copy < 2 && (copy + 1) * Superblock.Size <= start.Length; copy++)
        {
            switch (Superblock.TryParse(start.Slice(copy * Superblock.Size, Superblock.Size), out var superblock))
            {
                case Superblock.ParseResult.Valid when best is null || superblock!.Sequence > best.Sequence:
                    best = superblock;
                    break;
                case Superblock.ParseResult.NewerFormat:
                    newer = true;
                    break;
                case Superblock.ParseResult.Damaged:
                    damaged = true;
                    break;
            }
        }
        if (newer)
            return new DiskLabel(DiskContent.NewerMember, null, "a storage superblock of a newer format (written by a newer version)");
        if (best is not null)
            return new DiskLabel(DiskContent.Member, best, best.Role == Superblock.JournalRole ? $"the journal device of array '{best.Name}' ({best.ArrayId})" : $"member {best.Role} of array '{best.Name}' ({best.ArrayId})");
        if (ForeignSignature(start) is { } foreign)
            return new DiskLabel(DiskContent.Foreign, null, foreign);
        if (damaged)
            return new DiskLabel(DiskContent.UnknownData, null, "a damaged storage superblock");
        int used = start.IndexOfAnyExcept((byte)0);
        return used < 0
            ? new DiskLabel(DiskContent.Blank, null, "blank")
            : new DiskLabel(DiskContent.UnknownData, null, $"unrecognised data (first non-zero byte at offset {used})");
    }

    private static string? ForeignSignature(ReadOnlySpan<byte> s)
    {
        static bool At(ReadOnlySpan<byte> s, int offset, string ascii)
            => s.Length >= offset + ascii.Length && s.Slice(offset, ascii.Length).SequenceEqual(Encoding.ASCII.GetBytes(ascii));
        static uint U32(ReadOnlySpan<byte> s, int offset) => s.Length >= offset + 4 ? BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]) : 0;
        static ushort U16(ReadOnlySpan<byte> s, int offset) => s.Length >= offset + 2 ? BinaryPrimitives.ReadUInt16LittleEndian(s[offset..]) : (ushort)0;

        if (U32(s, 4096) == 0xa92b4efc || U32(s, 0) == 0xa92b4efc || U32(s, 8192) == 0xa92b4efc)
            return "a Linux md RAID superblock";
        if (U16(s, 1080) == 0xEF53)
            return "an ext2/3/4 filesystem";
        if (At(s, 0, "XFSB"))
            return "an XFS filesystem";
        if (At(s, 65600, "_BHRfS_M"))
            return "a Btrfs filesystem";
        if (At(s, 512, "LABELONE") || At(s, 0, "LABELONE"))
            return "an LVM physical volume";
        if (At(s, 512, "EFI PART"))
            return "a GPT partition table";
        if (At(s, 4086, "SWAPSPACE2") || At(s, 4086, "SWAP-SPACE"))
            return "Linux swap";
        if (At(s, 0, "LUKS") && s.Length > 5 && s[4] == 0xBA && s[5] == 0xBE)
            return "a LUKS encrypted volume";
        if (At(s, 3, "NTFS    "))
            return "an NTFS filesystem";
        if (At(s, 82, "FAT32   ") || At(s, 54, "FAT16   ") || At(s, 54, "FAT12   "))
            return "a FAT filesystem";
        if (U16(s, 510) == 0xAA55)
            return "an MBR partition table or boot sector";
        return null;
    }

    /// <summary>Writes <paramref name="superblock"/> into its copy (sequence mod 2) and flushes.</summary>
    public static async Task WriteAsync(IBlockDevice device, Superblock superblock, CancellationToken cancellationToken = default)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Superblock.Size);
        try
        {
            superblock.WriteTo(buffer);
            long offset = (long)(superblock.Sequence % 2) * Superblock.Size;
            await device.WriteAsync(offset, buffer.AsMemory(0, Superblock.Size), forceUnitAccess: true, cancellationToken).ConfigureAwait(false);
            await device.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
