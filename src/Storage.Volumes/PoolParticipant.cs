using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>What a transaction asks of one pool: thin volumes (segments) to create, each of a size.</summary>
public sealed record SegmentWork(IReadOnlyList<(string Name, long Size)> Create);

/// <summary>
/// A pool as a two-phase-commit participant. Prepare creates each segment under a staged name
/// (<c>tx-ID.NAME</c>): the pool commits before the call returns, so the staged volume is the durable PREPARED record,
/// and it holds exactly what the transaction reserved. Commit renames staged segments to their names; abort deletes
/// them. All three are idempotent, so a recovery may repeat them. <see cref="Prepared"/> lists the transactions
/// this pool holds staged segments for: what recovery must resolve after a crash.
/// </summary>
public sealed class PoolParticipant(string name, Pool pool)
{
    private const string StagedPrefix = "tx-";

    /// <summary>The participant's name in transaction records.</summary>
    public string Name { get; } = name;

    /// <summary>The pool.</summary>
    public Pool Pool { get; } = pool;

    /// <summary>Called with a step name before and after each durable step (tests cut the process short there).</summary>
    public Func<string, Task>? Step { get; set; }

    private static string Staged(string transaction, string segment) => $"{StagedPrefix}{transaction}.{segment}";

    /// <summary>Makes the reservation durable; a participant that returns has voted yes.</summary>
    public async Task PrepareAsync(string transaction, SegmentWork work, CancellationToken cancellationToken = default)
    {
        await StepAsync($"{Name}:before-prepare").ConfigureAwait(false);
        var existing = Pool.ListVolumes().Select(v => v.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var (segment, size) in work.Create)
        {
            if (existing.Contains(segment))
                throw new PoolConfigurationException($"Pool '{Name}' already has a volume '{segment}'.");
            if (!existing.Contains(Staged(transaction, segment)))
                await Pool.CreateVolumeAsync(Staged(transaction, segment), size, cancellationToken).ConfigureAwait(false);
        }
        await StepAsync($"{Name}:after-prepare").ConfigureAwait(false);
    }

    /// <summary>Makes the staged segments of <paramref name="transaction"/> the real ones.</summary>
    public async Task CommitAsync(string transaction, CancellationToken cancellationToken = default)
    {
        await StepAsync($"{Name}:before-commit").ConfigureAwait(false);
        string prefix = $"{StagedPrefix}{transaction}.";
        foreach (var staged in Pool.ListVolumes().Where(v => v.Name.StartsWith(prefix, StringComparison.Ordinal)))
            await Pool.RenameVolumeAsync(staged.Name, staged.Name[prefix.Length..], cancellationToken).ConfigureAwait(false);
        await StepAsync($"{Name}:after-commit").ConfigureAwait(false);
    }

    /// <summary>Drops the staged segments of <paramref name="transaction"/>, freeing what they reserved.</summary>
    public async Task AbortAsync(string transaction, CancellationToken cancellationToken = default)
    {
        string prefix = $"{StagedPrefix}{transaction}.";
        foreach (var staged in Pool.ListVolumes().Where(v => v.Name.StartsWith(prefix, StringComparison.Ordinal)))
            await Pool.DeleteVolumeAsync(staged.Name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The transactions this pool holds prepared (staged) segments for.</summary>
    public IReadOnlyList<string> Prepared()
        => [.. Pool.ListVolumes().Select(v => v.Name).Where(n => n.StartsWith(StagedPrefix, StringComparison.Ordinal))
            .Select(n => n[StagedPrefix.Length..n.IndexOf('.', StringComparison.Ordinal)]).Distinct(StringComparer.Ordinal)];

    private Task StepAsync(string step) => Step?.Invoke(step) ?? Task.CompletedTask;
}
