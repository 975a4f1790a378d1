using Storage.Devices;

namespace Storage.Raid;

public sealed partial class RaidArray
{
    /// <summary>Bytes reserved at the start of every member before the journal: two superblock copies and room to grow.</summary>
    public const long LabelAreaSize = 64 * 1024;

    /// <summary>
    /// Creates an array over <paramref name="members"/> (in role order) with optional <paramref name="spares"/>:
    /// checks every disk, writes the superblocks and computes the initial parity. Every member contributes
    /// the size of the smallest. The array takes ownership of the devices.
    /// </summary>
    /// <exception cref="ArrayConfigurationException">
    /// A disk holds a superblock, a foreign signature or data (and <see cref="ArrayCreateOptions.Force"/> is off),
    /// appears twice, or is too small; nothing was written.
    /// </exception>
    public static async Task<RaidArray> CreateAsync(IReadOnlyList<IBlockDevice> members, ArrayCreateOptions options, IReadOnlyList<IBlockDevice>? spares = null, ArrayRunOptions? run = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(options);
        spares ??= [];
        run ??= new ArrayRunOptions();
        var all = members.Concat(spares).ToList();
        var duplicate = all.GroupBy(d => d.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArrayConfigurationException($"{duplicate.Key} is listed more than once.");
        if (System.Text.Encoding.UTF8.GetByteCount(options.Name) > Superblock.MaxNameBytes)
            throw new ArrayConfigurationException($"Array name '{options.Name}' is longer than {Superblock.MaxNameBytes} bytes.");
        if (options.JournalSlots is < 2 or > 1024)
            throw new ArrayConfigurationException($"Journal slots must be 2 to 1024; got {options.JournalSlots}.");

        int parity = ArrayGeometry.ParityFor(options.Level, members.Count, options.ParityCount);
        int slots = options.Journal && parity > 0 ? options.JournalSlots : 0;
        long dataOffset = HeaderSize(options.ChunkSize, slots > 0, slots);
        long smallest = all.Count == 0 ? 0 : all.Min(d => d.Capacity);
        if (all.Count > 0 && smallest < dataOffset + options.ChunkSize)
        {
            var small = all.First(d => d.Capacity == smallest);
            throw new ArrayConfigurationException($"{small.Name} is too small: every disk needs at least {dataOffset + options.ChunkSize} bytes ({dataOffset >> 10} KiB of superblocks and journal, then one {options.ChunkSize >> 10} KiB chunk); it has {smallest}.");
        }
        long memberData = (smallest - dataOffset) / Math.Max(options.ChunkSize, 1) * options.ChunkSize;
        ArrayGeometry geometry;
        try
        {
            geometry = new ArrayGeometry(options.Level, members.Count, parity, options.ChunkSize, dataOffset, memberData);
        }
        catch (ArgumentException e)
        {
            throw new ArrayConfigurationException(e.Message.Split(" (Parameter")[0], e);
        }
        int sectorSize = all.Max(d => d.SectorSize);
        foreach (var device in all)
        {
            var label = await MemberLabel.ReadAsync(device, cancellationToken).ConfigureAwait(false);
            if (label.Content != DiskContent.Blank && !options.Force)
                throw new ArrayConfigurationException($"{device.Name} holds {label.Description}; refusing to overwrite it. Check the disk, or pass force to destroy its contents.");
        }

        var roles = members.Select(d => (Member?)new Member(d, Guid.NewGuid())).ToArray();
        var array = new RaidArray(Guid.NewGuid(), options.Name, geometry, LabelAreaSize, slots, roles, 0, run) { SectorSize = sectorSize };
        array._spares.AddRange(spares.Select(d => new Member(d, Guid.NewGuid())));
        await array.ClearLabelsAsync(cancellationToken).ConfigureAwait(false);
        await array.PersistAsync().ConfigureAwait(false);
        if (!options.AssumeZeroed && parity > 0)
            await array.ScrubAsync(ScrubMode.Resync, cancellationToken).ConfigureAwait(false);
        array.Notify($"created: {geometry}");
        return array;
    }

    /// <summary>Bytes every member reserves before its data: label area and journal, rounded up to 1 MiB.</summary>
    public static long HeaderSize(int chunkSize, bool journal = true, int journalSlots = 16)
        => AlignUp(LabelAreaSize + (journal ? journalSlots * (JournalRecord.HeaderSize + (long)chunkSize) : 0), 1 << 20);

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>Zeroes the label area (old signatures and copies) and the journal headers of every disk.</summary>
    private async Task ClearLabelsAsync(CancellationToken cancellationToken)
    {
        byte[] zeros = new byte[LabelAreaSize];
        foreach (var member in AllMembers())
        {
            await member.Device.WriteAsync(0, zeros, cancellationToken: cancellationToken).ConfigureAwait(false);
            for (int slot = 0; slot < JournalSlots; slot++)
                await member.Device.WriteAsync(JournalOffset + slot * JournalSlotSize, zeros.AsMemory(0, JournalRecord.HeaderSize), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
    }
}
