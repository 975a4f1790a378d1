using Storage.Metadata;

namespace Storage.Volumes;

// Online segment moves: two transactions around a copy made while the volume is written.
public sealed partial class VolumeTransactions
{
    /// <summary>
    /// Starts moving segment <paramref name="index"/> of volume <paramref name="name"/> from pool
    /// <paramref name="from"/> (null: its only copy) to pool <paramref name="to"/>, as a transaction: the pool creates an
    /// empty segment and the record gains it as a copy under <see cref="SpannedVolume.Move"/> (written, not read). The
    /// device serving the volume then fills it (<see cref="SpannedVolumeDevice.FillAsync(IProgress{long}?, CancellationToken)"/>) and
    /// <see cref="FinishMoveAsync"/> drops the old copy. Asked again for the move in progress, returns its record (a
    /// fill cut short starts over).
    /// </summary>
    /// <exception cref="VolumeException">No such volume, segment or pool; the copy is not where it is said to be; another move is in progress; the volume has snapshots; or the pool refused. Nothing was changed.</exception>
    public async Task<SpannedVolume> BeginMoveAsync(string name, int index, string? from, string to, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(to);
        var (volume, version) = await ReadVolumeAsync(name, cancellationToken).ConfigureAwait(false);
        if (volume.Move is { } moving)
        {
            if (moving.Segment == index && moving.To == to && (from is null || from == moving.From))
                return volume;
            throw new VolumeException($"Volume '{name}' is moving segment {moving.Segment} from pool '{moving.From}' to '{moving.To}'; let it finish " +
                $"(storage volume move {name} --segment {moving.Segment} --to {moving.To}) or cancel it (storage volume move {name} --cancel) first.");
        }
        RefuseWhileBusy(volume, "moved");
        if (index < 0 || index >= volume.Segments.Count)
            throw new VolumeException($"Volume '{name}' has segments 0 to {volume.Segments.Count - 1}; there is no segment {index}.");
        string[] copies = volume.Segments[index];
        from ??= copies.Length == 1 ? copies[0]
            : throw new VolumeException($"Segment {index} of volume '{name}' has copies on pools {string.Join(" and ", copies)}; say which one moves with --from.");
        if (!copies.Contains(from, StringComparer.Ordinal))
            throw new VolumeException($"Segment {index} of volume '{name}' is on pool(s) {string.Join(", ", copies)}, not on '{from}'.");
        await RefuseNewCopyAsync(volume, index, to, cancellationToken).ConfigureAwait(false);
        var started = volume with
        {
            Segments = [.. volume.Segments.Select((s, i) => i == index ? [.. s, to] : s)],
            Move = new SegmentMove(index, from, to),
        };
        string segment = SpannedVolume.SegmentName(name, index);
        var work = new Dictionary<string, SegmentWork>(StringComparer.Ordinal) { [to] = new SegmentWork([(segment, volume.SegmentSize(index))]) };
        await RunAsync([to], work, new PutCommand(SpannedVolume.Key(name), started.Encode(), version), $"Segment {index} of volume '{name}' was not moved", cancellationToken)
            .ConfigureAwait(false);
        return started;
    }

    /// <summary>
    /// Ends the move in progress on volume <paramref name="name"/>, as a transaction: the record drops the old copy
    /// and its pool deletes it (the filled copy is read from then on); or, with <paramref name="cancel"/>, drops the new
    /// copy instead. The device serving the volume must have stopped using the dropped copy when this commits
    /// (<see cref="SpannedVolumeDevice.AdoptAsync"/> does that: <paramref name="decide"/> is given the record this
    /// returns and the step that makes the decision, to run while the device holds its requests).
    /// </summary>
    /// <exception cref="VolumeException">No such volume or no move in progress, or the pool refused; nothing was changed.</exception>
    public async Task<SpannedVolume> FinishMoveAsync(string name, bool cancel = false, Func<SpannedVolume, Func<Task<bool>>, Task>? decide = null, CancellationToken cancellationToken = default)
    {
        var (volume, version) = await ReadVolumeAsync(name, cancellationToken).ConfigureAwait(false);
        var move = volume.Move ?? throw new VolumeException($"Volume '{name}' has no segment move in progress.");
        string drop = cancel ? move.To : move.From;
        var done = volume with
        {
            Segments = [.. volume.Segments.Select((s, i) => i == move.Segment ? s.Where(p => p != drop).ToArray() : s)],
            Move = null,
        };
        var work = new Dictionary<string, SegmentWork>(StringComparer.Ordinal)
        {
            [drop] = new SegmentWork([]) { Delete = [SpannedVolume.SegmentName(name, move.Segment)] },
        };
        await RunAsync([drop], work, [new PutCommand(SpannedVolume.Key(name), done.Encode(), version)],
            $"The move of segment {move.Segment} of volume '{name}' was not {(cancel ? "cancelled" : "finished")}", cancellationToken,
            decide: decide is null ? null : step => decide(done, step)).ConfigureAwait(false);
        return done;
    }

    /// <summary>
    /// Replaces the stale copy of segment <paramref name="index"/> of volume <paramref name="name"/> on pool
    /// <paramref name="from"/> (a pool lost for good, or being retired) by a new, empty copy on pool
    /// <paramref name="to"/>, as a transaction with <paramref name="to"/> only: <paramref name="from"/> need not answer.
    /// The record names <paramref name="to"/> instead, still stale, so the device serving the volume resynchronizes it
    /// from the copy that is read; the old copy stays on <paramref name="from"/>, recorded in <see cref="Leftovers"/>
    /// for its node to delete once that pool is online.
    /// </summary>
    /// <exception cref="VolumeException">No such volume, segment or pool; that copy is not stale (move it instead); a move is in progress; the volume has snapshots; or the pool refused. Nothing was changed.</exception>
    public async Task<SpannedVolume> ReplaceStaleCopyAsync(string name, int index, string from, string to, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(to);
        var (volume, version) = await ReadVolumeAsync(name, cancellationToken).ConfigureAwait(false);
        if (volume.Move is not null)
            RefuseWhileBusy(volume with { Stale = null }, "changed");
        if (index < 0 || index >= volume.Segments.Count)
            throw new VolumeException($"Volume '{name}' has segments 0 to {volume.Segments.Count - 1}; there is no segment {index}.");
        if (volume.StaleEntry(index, from) is not { Filling: false })
        {
            throw new VolumeException($"The copy of segment {index} of volume '{name}' on pool '{from}' is not stale" +
                (volume.StaleEntry(index, from) is null ? "; move it instead (storage volume move), which copies it while it is read." : " but being resynchronized; wait for the resync to end or fail."));
        }
        await RefuseNewCopyAsync(volume, index, to, cancellationToken).ConfigureAwait(false);
        var replaced = volume with
        {
            Segments = [.. volume.Segments.Select((s, i) => i == index ? s.Select(p => p == from ? to : p).ToArray() : s)],
            Stale = SpannedVolume.InOrder(volume.Stale!.Select(s => s.Segment == index && s.Pool == from ? new StaleCopy(index, to) : s)),
        };
        string segment = SpannedVolume.SegmentName(name, index);
        var work = new Dictionary<string, SegmentWork>(StringComparer.Ordinal) { [to] = new SegmentWork([(segment, volume.SegmentSize(index))]) };
        await RunAsync([to], work, [new PutCommand(SpannedVolume.Key(name), replaced.Encode(), version), new PutCommand(Leftovers.Key(from, segment), Leftovers.Encode(name, index))],
            $"The stale copy of segment {index} of volume '{name}' on pool '{from}' was not replaced", cancellationToken).ConfigureAwait(false);
        return replaced;
    }

    /// <summary>Refuses a new copy of segment <paramref name="index"/> on pool <paramref name="to"/> (a move's or a replacement's) that cannot be made.</summary>
    private async Task RefuseNewCopyAsync(SpannedVolume volume, int index, string to, CancellationToken cancellationToken)
    {
        string name = volume.Name;
        if (volume.Segments[index].Contains(to, StringComparer.Ordinal))
            throw new VolumeException($"Pool '{to}' holds a copy of segment {index} of volume '{name}' already; pick another pool.");
        if (!_pools.ContainsKey(to))
            throw new VolumeException($"There is no pool '{to}' here; the pools are {string.Join(", ", _pools.Keys.Order(StringComparer.Ordinal))}.");
        if (volume.Pools is { } allowed && !allowed.Contains(to, StringComparer.Ordinal))
            throw new VolumeException($"Volume '{name}' keeps its segments on pools {string.Join(", ", allowed)} (its --pools); '{to}' is not one of them.");
        if (await SnapshotsOfAsync(name, cancellationToken).ConfigureAwait(false) is { Count: > 0 } snapshots)
        {
            throw new VolumeException($"Volume '{name}' has snapshots ({string.Join(", ", snapshots.Select(s => s.Key[SpannedSnapshot.Key(name, "").Length..]))}), which " +
                "live in the segments' pools and are not copied to a segment's new copy; delete them first.");
        }
    }

    /// <summary>Refuses a change of <paramref name="volume"/>'s segments or snapshots while a move or a resync of a stale copy is in progress.</summary>
    private static void RefuseWhileBusy(SpannedVolume volume, string what)
    {
        if (volume.Stale is { Count: > 0 } stale)
        {
            throw new VolumeException($"Volume '{volume.Name}' cannot be {what} while a mirror copy is stale ({string.Join(", ", stale.Select(s =>
                $"segment {s.Segment} on pool '{s.Pool}'{(s.Filling ? ", resynchronizing" : "")}"))}): the daemon resynchronizes it once its pool answers; " +
                "`storage volume list` shows when it is done.");
        }
        if (volume.Move is { } move)
        {
            throw new VolumeException($"Volume '{volume.Name}' cannot be {what} while segment {move.Segment} moves from pool '{move.From}' to '{move.To}'; " +
                $"let the move finish (storage volume move {volume.Name} --segment {move.Segment} --to {move.To}) or cancel it (storage volume move {volume.Name} --cancel).");
        }
    }

    private async Task<(SpannedVolume Volume, long Version)> ReadVolumeAsync(string name, CancellationToken cancellationToken)
    {
        var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
        if (!read.IsOk)
            throw new VolumeException($"There is no volume '{name}'.");
        return (SpannedVolume.Decode(read.Value.Span), read.Version);
    }
}
