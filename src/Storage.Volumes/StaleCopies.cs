using Storage.Metadata;

namespace Storage.Volumes;

/// <summary>
/// Records in the catalogue which copies of a mirrored volume missed writes (<see cref="SpannedVolume.Stale"/>), and
/// brings them back. Each change is one compare-and-set of the volume's record: no pool changes, so no two-phase
/// commit. The device serving the volume makes them (<see cref="SpannedVolumeDevice.Recorder"/>), and acknowledges a
/// write that skipped a copy only once that copy is recorded stale, so a stale copy is never read as if current.
/// </summary>
public sealed class StaleCopies(IMetadataStore store)
{
    private const int Attempts = 16;

    /// <summary>
    /// Records <paramref name="copies"/> (segment, pool) of volume <paramref name="name"/> as stale: neither read nor
    /// written until a resync. Copies the record has stale already, or no longer has, are skipped. Returns the record and its version.
    /// </summary>
    /// <exception cref="VolumeException">No such volume; a segment would be left with no copy to read; or a move is in progress on that segment. Nothing was changed.</exception>
    public Task<(SpannedVolume Volume, long Version)> MarkAsync(string name, IReadOnlyCollection<(int Segment, string Pool)> copies, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(copies);
        return ChangeAsync(name, volume => Marked(volume, copies), cancellationToken);
    }

    /// <summary>
    /// <paramref name="volume"/> with <paramref name="copies"/> stale as <see cref="MarkAsync"/> records them, or
    /// <paramref name="volume"/> itself when that changes nothing; a read-only export uses it without recording.
    /// </summary>
    /// <exception cref="VolumeException">A segment would be left with no copy to read, or a move is in progress on that segment.</exception>
    public static SpannedVolume Marked(SpannedVolume volume, IReadOnlyCollection<(int Segment, string Pool)> copies)
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(copies);
        var stale = (volume.Stale ?? []).ToList();
        bool any = false;
        foreach (var (segment, pool) in copies)
        {
            if (segment < 0 || segment >= volume.Segments.Count || !volume.Segments[segment].Contains(pool, StringComparer.Ordinal)
                || volume.StaleEntry(segment, pool) is { Filling: false })
                continue;
            if (volume.Move is { } move && move.Segment == segment)
            {
                throw new VolumeException($"The copy of segment {segment} of volume '{volume.Name}' on pool '{pool}' failed while the segment moves from " +
                    $"'{move.From}' to '{move.To}'; cancel the move (storage volume move {volume.Name} --cancel) and try again.");
            }
            stale.RemoveAll(s => s.Segment == segment && s.Pool == pool);
            stale.Add(new StaleCopy(segment, pool));
            any = true;
        }
        if (!any)
            return volume;
        var changed = volume with { Stale = SpannedVolume.InOrder(stale) };
        for (int i = 0; i < changed.Segments.Count; i++)
        {
            if (!changed.Segments[i].Any(p => changed.Readable(i, p)))
            {
                throw new VolumeException($"Segment {i} of volume '{volume.Name}' would have no copy left to read: the copy on " +
                    $"{string.Join(" and ", copies.Where(c => c.Segment == i).Select(c => $"pool '{c.Pool}'"))} failed, and the other is stale or being filled.");
            }
        }
        return changed;
    }

    /// <summary>Starts the resync of stale copy <paramref name="pool"/> of segment <paramref name="segment"/>: it is written again from now on, not yet read.</summary>
    /// <exception cref="VolumeException">No such volume, or that copy is not stale.</exception>
    public Task<(SpannedVolume Volume, long Version)> BeginResyncAsync(string name, int segment, string pool, CancellationToken cancellationToken = default)
        => ChangeAsync(name, volume => volume.StaleEntry(segment, pool) switch
        {
            null => throw new VolumeException($"The copy of segment {segment} of volume '{name}' on pool '{pool}' is not stale."),
            { Filling: true } => volume,
            _ => volume with { Stale = [.. volume.Stale!.Select(s => s.Segment == segment && s.Pool == pool ? s with { Filling = true } : s)] },
        }, cancellationToken);

    /// <summary>Ends the resync of that copy once it holds every byte (it is read again); returns the record and its version.</summary>
    /// <exception cref="VolumeException">No such volume, or that copy is not being filled (it failed again meanwhile).</exception>
    public Task<(SpannedVolume Volume, long Version)> EndResyncAsync(string name, int segment, string pool, CancellationToken cancellationToken = default)
        => ChangeAsync(name, volume => volume.StaleEntry(segment, pool) is { Filling: true }
            ? volume with { Stale = volume.Stale!.Count == 1 ? null : [.. volume.Stale.Where(s => s.Segment != segment || s.Pool != pool)] }
            : throw new VolumeException($"The copy of segment {segment} of volume '{name}' on pool '{pool}' is not being resynchronized."), cancellationToken);

    /// <summary>Applies <paramref name="change"/> to the record with a compare-and-set, again on a newer record when another change came first.</summary>
    private async Task<(SpannedVolume Volume, long Version)> ChangeAsync(string name, Func<SpannedVolume, SpannedVolume> change, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        for (int attempt = 0; ; attempt++)
        {
            var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
            if (!read.IsOk)
                throw new VolumeException($"There is no volume '{name}'.");
            var volume = SpannedVolume.Decode(read.Value.Span);
            var changed = change(volume);
            if (ReferenceEquals(changed, volume))
                return (volume, read.Version);
            var put = await store.ExecuteAsync(new PutCommand(SpannedVolume.Key(name), changed.Encode(), read.Version), cancellationToken).ConfigureAwait(false);
            if (put.IsOk)
                return (changed, put.Version);
            if (put.Code != ResultCode.VersionMismatch || attempt == Attempts)
                throw new VolumeException($"The metadata service refused the change of volume '{name}''s stale copies: {put.Message}");
        }
    }
}
