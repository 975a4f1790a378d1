namespace Storage.Raid;

/// <summary>One disk of an array as <see cref="ArrayStatus"/> shows it.</summary>
/// <param name="Role">Its role, or -1 for a spare.</param>
/// <param name="Device">Device name (path).</param>
/// <param name="MemberId">Member identity.</param>
/// <param name="State">active, rebuilding, faulty, missing or spare.</param>
/// <param name="RebuildCheckpoint">Stripes in sync while rebuilding.</param>
/// <param name="ReadErrors">Read errors repaired from parity since assembly.</param>
public sealed record MemberStatus(int Role, string Device, Guid MemberId, string State, long RebuildCheckpoint, int ReadErrors);

/// <summary>A snapshot of an array's state, for display and serialisation.</summary>
/// <remarks><c>DataOffset</c> is where data starts on every member (bytes from its start, as mdadm's "Data Offset");
/// <c>JournalOffset</c> and <c>JournalBytes</c> locate the write journal (null and 0 when it is off): in every member, or on
/// <c>JournalDevice</c> when it has a device of its own. <c>BitmapOffset</c> (null without a write-intent bitmap),
/// <c>BitmapRegions</c>, <c>BitmapDirtyRegions</c> (marked now) and <c>BitmapRegionBytes</c> (array bytes per bit) describe the bitmap.</remarks>
public sealed record ArrayStatus(
    string Name,
    Guid Id,
    string Level,
    int Members,
    int DataChunks,
    int ParityChunks,
    int ChunkSize,
    long Capacity,
    string State,
    ulong Events,
    bool Journal,
    IReadOnlyList<MemberStatus> Disks,
    IReadOnlyList<RebuildProgress> Rebuilds,
    long ScrubDone,
    long ScrubTotal,
    IReadOnlyList<(long Offset, long Length)> BadBlocks,
    long DataOffset,
    long? JournalOffset,
    long JournalBytes,
    string? JournalDevice = null,
    long? BitmapOffset = null,
    int BitmapRegions = 0,
    int BitmapDirtyRegions = 0,
    long BitmapRegionBytes = 0);

public sealed partial class RaidArray
{
    /// <summary>The current state: level, geometry, members, events, rebuild and scrub progress, bad blocks.</summary>
    public ArrayStatus Status()
    {
        var disks = new List<MemberStatus>();
        int down = 0;
        for (int role = 0; role < _roles.Length; role++)
        {
            var member = _roles[role];
            if (member is null)
            {
                disks.Add(new MemberStatus(role, "", Guid.Empty, "missing", 0, 0));
                down++;
                continue;
            }
            down += member.State == MemberState.Active ? 0 : 1;
            disks.Add(new MemberStatus(role, member.Device.Name, member.Id, member.State.ToString().ToLowerInvariant(), member.RebuildCheckpoint, member.ReadErrors));
        }
        foreach (var spare in _spares.ToArray())
            disks.Add(new MemberStatus(-1, spare.Device.Name, spare.Id, "spare", 0, spare.ReadErrors));
        string state = _stopped ? "stopped" : down == 0 ? "clean" : down > Geometry.ParityCount ? "failed" : Rebuilds.Count > 0 ? "degraded, rebuilding" : "degraded";
        var (scrubDone, scrubTotal) = ScrubProgress;
        return new ArrayStatus(Name, Id, ArrayGeometry.Describe(Geometry.Level, Geometry.ParityCount), Geometry.MemberCount, Geometry.DataCount, Geometry.ParityCount,
            Geometry.ChunkSize, Capacity, state, Events, JournalSlots > 0, disks, Rebuilds, scrubDone, scrubTotal, BadBlocks,
            Geometry.DataOffset, JournalSlots > 0 ? JournalOffset : null, (long)JournalSlots * JournalSlotSize * (_journalDevice is null ? 1 : Geometry.MemberCount),
            _journalDevice?.Device.Name, _bitmap is null ? null : BitmapOffset, BitmapRegions, BitmapDirtyRegions, BitmapRegionStripes * Geometry.StripeDataSize);
    }

    /// <summary>
    /// Stops the array: waits for rebuilds to pause at a checkpoint, flushes every member, records a clean
    /// shutdown in the superblocks and disposes every device the array owns. Safe to call twice.
    /// </summary>
    public async Task StopAsync()
    {
        if (_stopped)
            return;
        List<Task> rebuilds;
        lock (_rebuilds)
        {
            foreach (var rebuild in _rebuilds.Values)
                rebuild.Cancel.Cancel();
            rebuilds = [.. _rebuilds.Values.Select(r => r.Task)];
        }
        await Task.WhenAll(rebuilds).ConfigureAwait(false);
        await StopBitmapCleanerAsync().ConfigureAwait(false);
        try
        {
            if (LiveMembers().Count > 0)
            {
                await FlushMembersAsync(long.MaxValue, CancellationToken.None).ConfigureAwait(false);
                await ClearIdleBitmapRegionsAsync(CancellationToken.None).ConfigureAwait(false);   // every write is home: clear what is idle (not while degraded)
                await PersistAsync(clean: true).ConfigureAwait(false);
            }
        }
        catch (ArrayFailedException)
        {
            // A failed array cannot be marked clean; its superblocks already say which members failed.
        }
        finally
        {
            _stopped = true;
            _journal.Dispose();
            foreach (var member in AllMembers().Concat(_retired).Distinct())
                member.Device.Dispose();
            _journalDevice?.Device.Dispose();
            Notify("stopped");
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);
}
