using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>What a transaction asks of one pool: thin volumes (segments) to create, each of a size, and segments to delete.</summary>
public sealed record SegmentWork(IReadOnlyList<(string Name, long Size)> Create)
{
    /// <summary>Segments (pool volume names) to delete.</summary>
    public IReadOnlyList<string> Delete { get; init; } = [];

    /// <summary>Snapshots to take: of segment (pool volume) Volume, named Name.</summary>
    public IReadOnlyList<(string Volume, string Name)> Snapshot { get; init; } = [];

    /// <summary>
    /// Segments to grow before the commit (a thin volume that grows reserves nothing; the volume's device does not
    /// reach the new bytes until the catalogue says so, and an abort shrinks it back).
    /// </summary>
    public IReadOnlyList<(string Name, long Size)> Grow { get; init; } = [];
}

/// <summary>
/// A pool as a two-phase-commit participant. Prepare stages its part under names that say what commit will do: a
/// segment to create is created as <c>tx-ID.c.NAME</c>, one to delete is renamed to <c>tx-ID.d.NAME</c>, a snapshot is
/// taken as <c>tx-ID.s.NAME</c> (renamed to NAME at commit, deleted at abort). The pool
/// commits before the call returns, so the staged names are the durable PREPARED record and hold exactly what was
/// reserved. Commit renames created segments to their names and deletes the deleted ones; abort does the opposite. All
/// are idempotent, so recovery may repeat them. <see cref="Prepared"/> lists the transactions this pool holds staged
/// segments for: what recovery must resolve after a crash.
/// </summary>
public sealed class PoolParticipant(string name, Pool pool) : ITransactionParticipant, IDisposable
{
    private const string StagedPrefix = "tx-";
    private readonly SemaphoreSlim _gate = new(1, 1);   // one step at a time: recovery on several nodes may resolve the same transaction

    /// <summary>The participant's name in transaction records.</summary>
    public string Name { get; } = name;

    /// <summary>The pool.</summary>
    public Pool Pool { get; } = pool;

    /// <summary>Called with a step name before and after each durable step (tests cut the process short there).</summary>
    public Func<string, Task>? Step { get; set; }

    private static string Created(string transaction, string segment) => $"{StagedPrefix}{transaction}.c.{segment}";

    private static string Deleted(string transaction, string segment) => $"{StagedPrefix}{transaction}.d.{segment}";

    private static string Snapped(string transaction, string snapshot) => $"{StagedPrefix}{transaction}.s.{snapshot}";

    /// <summary>
    /// Makes the reservation durable; a participant that returns has voted yes. <paramref name="cut"/> runs once the
    /// snapshots of <see cref="SegmentWork.Snapshot"/> are taken in memory (writes after it are not in them), before
    /// they are durable; with no snapshot to take, once the checks pass.
    /// </summary>
    /// <exception cref="PoolConfigurationException">A segment to create exists already, or one to delete is not here: a no vote.</exception>
    public async Task PrepareAsync(string transaction, SegmentWork work, Action? cut = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await PrepareLockedAsync(transaction, work, cut, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task PrepareLockedAsync(string transaction, SegmentWork work, Action? cut, CancellationToken cancellationToken)
    {
        await StepAsync($"{Name}:before-prepare").ConfigureAwait(false);
        var existing = Pool.ListVolumes().Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (segment, size) in work.Create)
        {
            if (existing.Contains(segment))
                throw new PoolConfigurationException($"Pool '{Name}' already has a volume '{segment}'.");
            if (!existing.Contains(Created(transaction, segment)))
                await Pool.CreateVolumeAsync(Created(transaction, segment), size, cancellationToken).ConfigureAwait(false);
        }
        foreach (string segment in work.Delete)
        {
            if (existing.Contains(Deleted(transaction, segment)))
                continue;
            if (!existing.Contains(segment))
                throw new PoolConfigurationException($"Pool '{Name}' has no volume '{segment}' to delete.");
            await Pool.RenameVolumeAsync(segment, Deleted(transaction, segment), cancellationToken).ConfigureAwait(false);
        }
        var sizes = Pool.ListVolumes().ToDictionary(v => v.Name, v => v.Size, StringComparer.Ordinal);
        foreach (var (segment, size) in work.Grow)
        {
            if (!sizes.TryGetValue(segment, out long current))
                throw new PoolConfigurationException($"Pool '{Name}' has no volume '{segment}' to grow.");
            if (current < size)
                await Pool.ResizeVolumeAsync(segment, size, cancellationToken).ConfigureAwait(false);
        }
        var snapshots = new List<(string Volume, string Snapshot)>();
        foreach (var (volume, snapshot) in work.Snapshot)
        {
            var taken = Pool.ListSnapshots(volume, countSpace: false).Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            if (taken.Contains(snapshot))
                throw new PoolConfigurationException($"Segment '{volume}' in pool '{Name}' already has a snapshot '{snapshot}'.");
            if (!taken.Contains(Snapped(transaction, snapshot)))
                snapshots.Add((volume, Snapped(transaction, snapshot)));
        }
        if (snapshots.Count > 0)
            await Pool.CreateSnapshotsAsync(snapshots, cut, cancellationToken).ConfigureAwait(false);   // one instant, one commit
        else
            cut?.Invoke();
        await StepAsync($"{Name}:after-prepare").ConfigureAwait(false);
    }

    /// <summary>Makes what <paramref name="transaction"/> staged here final.</summary>
    public async Task CommitAsync(string transaction, CancellationToken cancellationToken = default)
    {
        await StepAsync($"{Name}:before-commit").ConfigureAwait(false);
        await ResolveAsync(transaction, commit: true, cancellationToken).ConfigureAwait(false);
        await StepAsync($"{Name}:after-commit").ConfigureAwait(false);
    }

    /// <summary>Undoes what <paramref name="transaction"/> staged here, freeing what it reserved.</summary>
    public Task AbortAsync(string transaction, CancellationToken cancellationToken = default) => ResolveAsync(transaction, commit: false, cancellationToken);

    private async Task ResolveAsync(string transaction, bool commit, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await ResolveLockedAsync(transaction, commit, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task ResolveLockedAsync(string transaction, bool commit, CancellationToken cancellationToken)
    {
        string created = $"{StagedPrefix}{transaction}.c.", deleted = $"{StagedPrefix}{transaction}.d.", snapped = $"{StagedPrefix}{transaction}.s.";
        foreach (var staged in Pool.ListSnapshots(countSpace: false).Where(s => s.Name.StartsWith(snapped, StringComparison.Ordinal)))
        {
            if (commit)
                await Pool.RenameSnapshotAsync(staged.Volume, staged.Name, staged.Name[snapped.Length..], cancellationToken).ConfigureAwait(false);
            else
                await Pool.DeleteSnapshotAsync(staged.Volume, staged.Name, cancellationToken).ConfigureAwait(false);
        }
        foreach (var staged in Pool.ListVolumes().Select(v => v.Name))
        {
            if (staged.StartsWith(created, StringComparison.Ordinal))
            {
                if (commit)
                    await Pool.RenameVolumeAsync(staged, staged[created.Length..], cancellationToken).ConfigureAwait(false);
                else
                    await Pool.DeleteVolumeAsync(staged, cancellationToken).ConfigureAwait(false);
            }
            else if (staged.StartsWith(deleted, StringComparison.Ordinal))
            {
                if (commit)
                    await Pool.DeleteVolumeAsync(staged, cancellationToken).ConfigureAwait(false);
                else
                    await Pool.RenameVolumeAsync(staged, staged[deleted.Length..], cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Gives each segment of <paramref name="volume"/> held here the size the catalogue says (after a resize, or a crash in one).</summary>
    public async Task ReconcileAsync(SpannedVolume volume, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volume);
        var sizes = Pool.ListVolumes().ToDictionary(v => v.Name, v => v.Size, StringComparer.Ordinal);
        for (int i = 0; i < volume.Segments.Count; i++)
        {
            string segment = SpannedVolume.SegmentName(volume.Name, i);
            if (volume.Segments[i].Contains(Name) && sizes.TryGetValue(segment, out long size) && size != volume.SegmentSize(i))
                await Pool.ResizeVolumeAsync(segment, volume.SegmentSize(i), cancellationToken).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public Task<long> FreeBytesAsync(CancellationToken cancellationToken = default) => Task.FromResult(Pool.GetStatus().FreeBytes);

    /// <inheritdoc />
    public Task<IReadOnlyList<string>> PreparedAsync(CancellationToken cancellationToken = default) => Task.FromResult(Prepared());

    /// <summary>The transactions this pool holds prepared (staged) segments for.</summary>
    public IReadOnlyList<string> Prepared()
        => [.. Pool.ListVolumes().Select(v => v.Name).Concat(Pool.ListSnapshots(countSpace: false).Select(s => s.Name))
            .Where(n => n.StartsWith(StagedPrefix, StringComparison.Ordinal))
            .Select(n => n[StagedPrefix.Length..n.IndexOf('.', StringComparison.Ordinal)]).Distinct(StringComparer.Ordinal)];

    private Task StepAsync(string step) => Step?.Invoke(step) ?? Task.CompletedTask;

    /// <summary>Releases the step lock (the pool is not closed: its owner closes it).</summary>
    public void Dispose() => _gate.Dispose();
}
