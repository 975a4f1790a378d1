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
        var journalDevice = options.JournalDevice;
        if (journalDevice is not null)
        {
            if (all.Contains(journalDevice) || all.Any(d => d.Name == journalDevice.Name))
                throw new ArrayConfigurationException($"{journalDevice.Name} is given both as the journal device and as a disk; the journal needs a device of its own.");
            if (!options.Journal)
                throw new ArrayConfigurationException("A journal device was given with the journal off; drop one of the two.");
        }
        var duplicate = all.GroupBy(d => d.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArrayConfigurationException($"{duplicate.Key} is listed more than once.");
        if (System.Text.Encoding.UTF8.GetByteCount(options.Name) > Superblock.MaxNameBytes)
            throw new ArrayConfigurationException($"Array name '{options.Name}' is longer than {Superblock.MaxNameBytes} bytes.");
        if (options.SlotsToUse is < 2 or > 1024)
            throw new ArrayConfigurationException($"Journal slots must be 2 to 1024; got {options.JournalSlots}.");

        int parity = ArrayGeometry.ParityFor(options.Level, members.Count, options.ParityCount);
        int slots = options.Journal && parity > 0 ? options.SlotsToUse : 0;
        if (journalDevice is not null && slots == 0)
            throw new ArrayConfigurationException($"A {options.Level} array of {members.Count} disks has no parity, so it keeps no journal; drop the journal device.");
        if (options.Bitmap && parity > 0 && options.BitmapRegionBytes <= 0)
            throw new ArrayConfigurationException($"The bitmap region must be a positive number of bytes; got {options.BitmapRegionBytes}.");
        long smallestDisk = members.Concat(spares).Select(d => d.Capacity).DefaultIfEmpty(0).Min();
        var (regionStripes, bitmapBytes) = options.Bitmap && parity > 0
            ? BitmapLayout(Math.Max(1, smallestDisk / Math.Max(options.ChunkSize, 1)), (long)options.ChunkSize * (members.Count - parity), options.BitmapRegionBytes)
            : (0, 0);
        // Label area, bitmap, then the journal ring unless the journal has a device of its own.
        long dataOffset = HeaderSize(options.ChunkSize, slots > 0 && journalDevice is null, slots, bitmapBytes);
        if (journalDevice is not null)
        {
            long needed = JournalDeviceSize(members.Count, options.ChunkSize, slots);
            if (journalDevice.Capacity < needed)
                throw new ArrayConfigurationException($"{journalDevice.Name} is too small for the journal: {members.Count} members × {slots} slots of {options.ChunkSize >> 10} KiB chunks need {needed} bytes ({(needed + (1 << 20) - 1) >> 20} MiB); it has {journalDevice.Capacity}.");
            if (journalDevice.SectorSize > all.Max(d => d.SectorSize))
                throw new ArrayConfigurationException($"{journalDevice.Name} has {journalDevice.SectorSize}-byte sectors, more than the disks'; use a journal device with sectors no larger than the members'.");
        }
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
        foreach (var device in journalDevice is null ? all : all.Append(journalDevice))
        {
            var label = await MemberLabel.ReadAsync(device, cancellationToken).ConfigureAwait(false);
            if (label.Content != DiskContent.Blank && !options.Force)
                throw new ArrayConfigurationException($"{device.Name} holds {label.Description}; refusing to overwrite it. Check the disk, or pass force to destroy its contents.");
        }

        var roles = members.Select(d => (Member?)new Member(d, Guid.NewGuid())).ToArray();
        var journal = journalDevice is null ? null : new Member(journalDevice, Guid.NewGuid());
        long journalOffset = journal is null ? LabelAreaSize + bitmapBytes : LabelAreaSize;
        var array = new RaidArray(Guid.NewGuid(), options.Name, geometry, journalOffset, slots, roles, 0, run, journal) { SectorSize = sectorSize };
        array.UseBitmap(LabelAreaSize, bitmapBytes, regionStripes);
        array._spares.AddRange(spares.Select(d => new Member(d, Guid.NewGuid())));
        await array.ClearLabelsAsync(cancellationToken).ConfigureAwait(false);
        await array.PersistAsync().ConfigureAwait(false);
        if (!options.AssumeZeroed && parity > 0)
            await array.ScrubAsync(ScrubMode.Resync, cancellationToken).ConfigureAwait(false);
        array.Notify($"created: {geometry}");
        array.StartBitmapCleaner();
        return array;
    }

    /// <summary>Bytes every member reserves before its data: label area, bitmap and journal, rounded up to 1 MiB.</summary>
    public static long HeaderSize(int chunkSize, bool journal = true, int journalSlots = 16, int bitmapBytes = 0)
        => AlignUp(LabelAreaSize + bitmapBytes + (journal ? journalSlots * (JournalRecord.HeaderSize + (long)chunkSize) : 0), 1 << 20);

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    /// <summary>Zeroes the label area (old signatures and copies) of every disk and the journal device, and every journal header.</summary>
    private async Task ClearLabelsAsync(CancellationToken cancellationToken)
    {
        byte[] zeros = new byte[LabelAreaSize];
        foreach (var member in AllMembers())
        {
            await member.Device.WriteAsync(0, zeros, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (BitmapBytes > 0)
                await member.Device.WriteAsync(BitmapOffset, new byte[BitmapBytes], cancellationToken: cancellationToken).ConfigureAwait(false);
            if (_journalDevice is not null)
                continue;
            for (int slot = 0; slot < JournalSlots; slot++)
                await member.Device.WriteAsync(JournalOffset + slot * JournalSlotSize, zeros.AsMemory(0, JournalRecord.HeaderSize), cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        if (_journalDevice is { } journal)
        {
            await journal.Device.WriteAsync(0, zeros, cancellationToken: cancellationToken).ConfigureAwait(false);
            for (int slot = 0; slot < JournalSlots; slot++)
                await journal.Device.WriteAsync(DeviceSlotOffset(slot), zeros.AsMemory(0, JournalRecord.HeaderSize), cancellationToken: cancellationToken).ConfigureAwait(false);   // a slot is read from its first header on
        }
    }
}
