using Storage.Native;
using System.Buffers;
using Storage.Devices;

namespace Storage.Raid;

/// <summary>What assembly found and did.</summary>
/// <param name="Warnings">Disks left out and why (stale, replaced, another array).</param>
/// <param name="JournalRecordsReplayed">Stripe updates found complete in the journal and applied again.</param>
/// <param name="JournalRecordsDiscarded">Incomplete journal records dropped (never acknowledged).</param>
/// <param name="WasClean">
/// The array had been stopped cleanly: every journal record was home already, and the replay (done anyway) changed nothing.
/// </param>
public sealed record AssemblyReport(IReadOnlyList<string> Warnings, int JournalRecordsReplayed, int JournalRecordsDiscarded, bool WasClean)
{
    /// <summary>The devices given that the array does not use (stale, replaced, copies); they stay the caller's.</summary>
    public IReadOnlyList<IBlockDevice> LeftOut { get; init; } = [];
}

public sealed partial class RaidArray
{
    /// <summary>What the last <see cref="AssembleAsync"/> found.</summary>
    public AssemblyReport? Assembly { get; private set; }

    /// <summary>
    /// Assembles an array from disks that carry its superblocks (any order, spares included). The superblock
    /// with the highest events decides each role's state; a disk whose role has since been given to another or
    /// marked failed is left out untouched and reported. Roles with no disk run degraded. Complete journal
    /// records are replayed so no stripe is left half-updated, then rebuilds resume from their checkpoints.
    /// Takes ownership of the devices it uses; devices left out stay the caller's.
    /// </summary>
    /// <exception cref="ArrayConfigurationException">
    /// No superblock, disks of different arrays, a newer format, or fewer members than the level needs.
    /// </exception>
    public static async Task<RaidArray> AssembleAsync(IReadOnlyList<IBlockDevice> devices, ArrayRunOptions? run = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(devices);
        run ??= new ArrayRunOptions();
        if (devices.Count == 0)
            throw new ArrayConfigurationException("No disks given to assemble.");
        var found = new List<(IBlockDevice Device, Superblock Superblock)>();
        foreach (var device in devices)
        {
            var label = await MemberLabel.ReadAsync(device, cancellationToken).ConfigureAwait(false);
            switch (label.Content)
            {
                case DiskContent.Member:
                    found.Add((device, label.Superblock!));
                    break;
                case DiskContent.NewerMember:
                    throw new ArrayConfigurationException($"{device.Name} holds {label.Description}; use that version to assemble it.");
                default:
                    throw new ArrayConfigurationException($"{device.Name} is not an array member: it holds {label.Description}.");
            }
        }
        var arrays = found.GroupBy(f => f.Superblock.ArrayId).ToList();
        if (arrays.Count > 1)
            throw new ArrayConfigurationException("The disks belong to different arrays: " + string.Join("; ", arrays.Select(a => $"'{a.First().Superblock.Name}' ({a.Key}): {string.Join(", ", a.Select(f => f.Device.Name))}")) + ". Assemble each array separately.");

        var journals = found.Where(f => f.Superblock.Role == Superblock.JournalRole).ToList();
        found.RemoveAll(f => f.Superblock.Role == Superblock.JournalRole);
        if (found.Count == 0)
            throw new ArrayConfigurationException($"{string.Join(", ", journals.Select(j => j.Device.Name))}: only the journal device of array '{journals[0].Superblock.Name}' was given; give its member disks too.");
        var newest = found.MaxBy(f => f.Superblock.Events).Superblock;
        var geometry = newest.Geometry;
        var readded = new List<int>();
        var warnings = new List<string>();
        var leftOut = new List<IBlockDevice>();
        Member? journal = null;
        foreach (var (device, superblock) in journals)
        {
            if (newest.JournalDevice != Guid.Empty && superblock.MemberId == newest.JournalDevice && journal is null)
                journal = new Member(device, superblock.MemberId);
            else
                throw new ArrayConfigurationException($"{device.Name} is a journal device ({superblock.MemberId}) that array '{newest.Name}' does not use" +
                    (newest.JournalDevice == Guid.Empty ? " (its journal, if any, is in its members)" : $" (its journal device is {newest.JournalDevice})") + "; leave it out.");
        }
        bool dropJournal = false;
        if (newest.JournalDevice != Guid.Empty && journal is null)
        {
            if (!run.AssembleWithoutJournalDevice)
                throw new ArrayConfigurationException($"Array '{newest.Name}' keeps its write journal on a separate device ({newest.JournalDevice}), which was not given; " +
                    "list it with the member disks (it replays stripe updates a crash may have left half written). If it is lost for good, assemble without it " +
                    "(storage array assemble … --without-journal-device): the array then runs without a journal, and updates the journal held that had not reached the disks are lost.");
            dropJournal = true;
            warnings.Add($"journal device {newest.JournalDevice} not given: assembled without a journal from now on" +
                (newest.Clean ? " (it had been stopped cleanly: nothing was lost)" : "; stripe updates the journal held that had not reached the disks are lost, and written regions are resynced"));
        }
        var roles = new Member?[geometry.MemberCount];
        var spares = new List<Member>();
        var ids = new HashSet<Guid>();
        foreach (var (device, superblock) in found)
        {
            if (!ids.Add(superblock.MemberId))
            {
                warnings.Add($"{device.Name}: same member id as another disk given (a copy?); left out");
                leftOut.Add(device);
                continue;
            }
            int role = Array.FindIndex(newest.Roles.ToArray(), r => r.MemberId == superblock.MemberId);
            if (role >= 0)
            {
                var record = newest.Roles[role];
                if (record.State is MemberState.Active or MemberState.Rebuilding)
                {
                    roles[role] = new Member(device, superblock.MemberId) { State = record.State, RebuildCheckpoint = record.RebuildCheckpoint, ResyncFromBitmap = record.ResyncFromBitmap };
                }
                else if (record.State == MemberState.Missing && newest.BitmapBytes > 0)
                {
                    // It left this role (absent, or removed) and nothing took it since: every write it missed is marked.
                    roles[role] = new Member(device, superblock.MemberId) { State = MemberState.Rebuilding, RebuildCheckpoint = 0, ResyncFromBitmap = true };
                    readded.Add(role);
                }
                else if (record.State == MemberState.Missing)
                {
                    spares.Add(new Member(device, superblock.MemberId));
                    warnings.Add($"{device.Name}: was missing from role {role} (events {superblock.Events} < {newest.Events}); rebuilding it (no bitmap to resync from)");
                }
                else
                {
                    warnings.Add($"{device.Name}: role {role} was marked {record.State.ToString().ToLowerInvariant()} (events {superblock.Events} < {newest.Events}); left out — add it again to rebuild it");
                    leftOut.Add(device);
                }
            }
            else if (superblock.Role == -1 && superblock.Events == newest.Events)
            {
                spares.Add(new Member(device, superblock.MemberId));
            }
            else if (superblock.Role >= 0 && superblock.Role < newest.Roles.Count && newest.Roles[superblock.Role].State == MemberState.Missing)
            {
                // It was absent, not failed, while the array ran without it: it comes back as a spare and is rebuilt.
                spares.Add(new Member(device, superblock.MemberId));
                warnings.Add($"{device.Name}: was missing from role {superblock.Role} (events {superblock.Events} < {newest.Events}); rebuilding it");
            }
            else
            {
                warnings.Add($"{device.Name}: stale (events {superblock.Events} < {newest.Events}) and no longer holds a role; left out — add it again to reuse it");
                leftOut.Add(device);
            }
        }
        int present = roles.Count(r => r is { State: MemberState.Active });
        if (present < geometry.DataCount)
            throw new ArrayConfigurationException($"Array '{newest.Name}' needs at least {geometry.DataCount} of its {geometry.MemberCount} members in sync; found {present}. Give the missing disks: " +
                string.Join(", ", Enumerable.Range(0, roles.Length).Where(i => roles[i] is null).Select(i => $"role {i}")) + (warnings.Count > 0 ? ". " + string.Join("; ", warnings) : "") + ".");

        var array = new RaidArray(newest.ArrayId, newest.Name, geometry, newest.JournalOffset, dropJournal ? 0 : newest.JournalSlots, roles, newest.Events, run, journal)
        {
            SectorSize = roles.OfType<Member>().Concat(spares).Max(m => m.Device.SectorSize),
        };
        array._sequence = found.Max(f => f.Superblock.Sequence);
        array.UseBitmap(newest.BitmapOffset, newest.BitmapBytes, newest.BitmapRegionStripes);
        for (int role = 0; role < roles.Length; role++)
        {
            if (roles[role] is null && newest.Roles[role].State is MemberState.Missing or MemberState.Active or MemberState.Rebuilding)
                array._absentIds[role] = newest.Roles[role].MemberId;   // left out now: it may come back and be re-added
        }
        await array.LoadBitmapAsync(spares, cancellationToken).ConfigureAwait(false);
        foreach (int role in readded)
            warnings.Add($"{roles[role]!.Device.Name}: was missing from role {role}; re-added, resyncing the {array.BitmapDirtyRegions} of {array.BitmapRegions} bitmap regions written meanwhile");
        array._spares.AddRange(spares);
        array._badBlocks.AddRange(newest.BadBlocks);
        var (replayed, discarded) = await array.ReplayJournalAsync(cancellationToken).ConfigureAwait(false);
        await array.PersistAsync().ConfigureAwait(false);
        if (!newest.Clean && array.JournalSlots == 0 && (array._bitmap is not null || dropJournal) && array.LiveMembers().Count == geometry.MemberCount)
        {
            // No journal to replay: stripes written when it stopped may have data and parity out of step; the bitmap says which.
            var dirty = array.StripesToResync();
            var resync = await array.ScrubAsync(ScrubMode.Resync, cancellationToken, dirty).ConfigureAwait(false);
            warnings.Add(array._bitmap is null
                ? $"not stopped cleanly and no journal: resynced every stripe ({resync.StripesChecked} checked, {resync.Repaired} fixed)"
                : $"not stopped cleanly: resynced the {array.BitmapDirtyRegions} bitmap region(s) written last ({resync.StripesChecked} stripes, {resync.Repaired} fixed)");
        }
        array.Assembly = new AssemblyReport(warnings, replayed, discarded, newest.Clean) { LeftOut = leftOut };
        array.Notify($"assembled: {geometry}; {present} of {geometry.MemberCount} members in sync, {spares.Count} spare(s), {replayed} journal record(s) replayed, {discarded} discarded");
        for (int role = 0; role < roles.Length; role++)
        {
            if (roles[role] is { State: MemberState.Rebuilding } member)
                array.StartRebuild(role, member);
        }
        if (run.AutoRebuild)
            await array.StartRebuildOnSpareAsync().ConfigureAwait(false);
        array.StartBitmapCleaner();
        return array;
    }

    /// <summary>
    /// Reads every journal slot of every member that holds a role and applies, in sequence order, each record
    /// whose parts are all present on the members that must hold them. A record missing a part on such a member
    /// never finished journalling, so no byte of it reached a home location: it is dropped. A part missing
    /// because its member is gone is implied by the others (the stripe is consistent without it). Records stay in the
    /// ring after they are home, so a clean stop leaves records that are applied again (idempotently).
    /// </summary>
    /// <summary>Every journal part found: slot by slot on each writable member's ring, or packed on the journal device.</summary>
    private async Task<List<(int Role, JournalRecord Record, long SlotOffset)>> ReadPartsAsync(CancellationToken cancellationToken)
    {
        if (_journalDevice is { } journal)
            return await ReadDevicePartsAsync(journal.Device, cancellationToken).ConfigureAwait(false);
        var parts = new List<(int, JournalRecord, long)>();
        byte[] header = new byte[JournalRecord.HeaderSize];
        for (int role = 0; role < _roles.Length; role++)
        {
            if (_roles[role] is not { Writable: true } member)
                continue;
            for (int slot = 0; slot < JournalSlots; slot++)
            {
                long slotOffset = JournalOffset + slot * JournalSlotSize;
                try
                {
                    await member.Device.ReadAsync(slotOffset, header, cancellationToken).ConfigureAwait(false);
                }
                catch (BlockDeviceException)
                {
                    continue;
                }
                if (JournalRecord.TryParse(header, Id, Geometry.MemberCount, out var record) && record!.Role == role
                    && record.Length > 0 && record.Length <= Geometry.ChunkSize && record.Sequence % JournalSlots == slot)
                    parts.Add((role, record, slotOffset));
            }
        }
        return parts;
    }

    private async Task<(int Replayed, int Discarded)> ReplayJournalAsync(CancellationToken cancellationToken)
    {
        if (JournalSlots == 0)
            return (0, 0);
        var parts = new Dictionary<long, List<(int Role, JournalRecord Record, long SlotOffset)>>();
        long highest = 0;
        foreach (var (role, record, slotOffset) in await ReadPartsAsync(cancellationToken).ConfigureAwait(false))
        {
            // Only parts written to the disk that holds the role now, in sync or being rebuilt.
            if (_roles[role] is not { Writable: true } member || record.Members[role] != member.Id || record.Stripe < 0 || record.Stripe >= Geometry.StripeCount)
                continue;
            highest = Math.Max(highest, record.Sequence);
            if (!parts.TryGetValue(record.Sequence, out var list))
                parts[record.Sequence] = list = [];
            list.Add((role, record, slotOffset));   // a header's offset on the member, or on the journal device
        }
        _journal.StartAfter(highest);
        int replayed = 0, discarded = 0;
        // Records at or below the floor are home already, and their parts may be stale (see JournalRing).
        long floor = _journal.ReplayFloor(highest);
        foreach (var sequence in parts.Keys.Where(s => s > floor).Order())
        {
            var list = parts[sequence];
            var first = list[0].Record;
            RememberJournalled((int)(sequence % JournalSlots), first.Stripe);   // replayable again until S-B newer records (see TrimAsync)
            bool complete = list.All(p => p.Record.Stripe == first.Stripe && p.Record.Offset == first.Offset && p.Record.Length == first.Length && p.Record.Roles == first.Roles
                && p.Record.Members.AsSpan().SequenceEqual(first.Members));
            byte[] data = ArrayPool<byte>.Shared.Rent(first.Length * list.Count);
            try
            {
                for (int i = 0; i < list.Count && complete; i++)
                {
                    var member = _roles[list[i].Role]!;
                    var bytes = data.AsMemory(i * first.Length, first.Length);
                    try
                    {
                        await (_journalDevice?.Device ?? member.Device).ReadAsync(list[i].SlotOffset + JournalRecord.HeaderSize, bytes, cancellationToken).ConfigureAwait(false);
                        complete = Crc32C.Compute(bytes.Span) == list[i].Record.DataCrc;
                    }
                    catch (BlockDeviceException)
                    {
                        complete = false;
                    }
                }
                for (int role = 0; role < _roles.Length && complete; role++)
                {
                    // A part is required from the disk that held the role when the record was written, if it still
                    // holds it in sync. A replacement that took the role later was rebuilt after this update.
                    bool written = (first.Roles & (1UL << role)) != 0;
                    bool required = _roles[role] is { } holder && holder.Id == first.Members[role]
                        && (holder.State == MemberState.Active || (holder.State == MemberState.Rebuilding && first.Stripe < holder.RebuildCheckpoint));
                    if (written && required && !list.Any(p => p.Role == role))
                        complete = false;
                }
                if (!complete)
                {
                    discarded++;
                    continue;
                }
                for (int i = 0; i < list.Count; i++)
                {
                    var member = _roles[list[i].Role]!;
                    await member.Device.WriteAsync(_layout.MemberOffset(first.Stripe, first.Offset), data.AsMemory(i * first.Length, first.Length), cancellationToken: cancellationToken).ConfigureAwait(false);
                }
                replayed++;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(data);
            }
        }
        foreach (var member in LiveMembers())
            await member.Device.FlushAsync(cancellationToken).ConfigureAwait(false);
        return (replayed, discarded);
    }
}
