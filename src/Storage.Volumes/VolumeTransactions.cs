using Storage.Metadata;
using Storage.Versioning;

namespace Storage.Volumes;

/// <summary>A volume operation was refused or failed; nothing it started is left behind.</summary>
public sealed class VolumeException(string message) : Exception(message);

/// <summary>
/// Volumes across pools, created and deleted as two-phase commits whose decision is an entry of the Paxos log.
/// <list type="number">
/// <item>Begin: the transaction record goes into the metadata service with its participants and the catalogue change
/// the commit will make (the volume's record).</item>
/// <item>Prepare: every pool stages what it reserves durably (<see cref="PoolParticipant"/>) and so votes yes.</item>
/// <item>Decide: the commit decision and the catalogue change are one log entry: the commit point. A refusal there
/// (the name was taken meanwhile) or a no vote aborts.</item>
/// <item>Notify: each pool commits (or aborts); then the record is forgotten.</item>
/// </list>
/// Presumed abort: <see cref="RecoverAsync"/> aborts a transaction that never got a decision and completes one that
/// did, on every pool, whoever crashed where. A failure of a pool or of the metadata service is not a vote: only
/// <see cref="PoolConfigurationException"/>, <see cref="PoolFullException"/> and I/O errors count as "no"; anything else
/// propagates as if the process had stopped there (which is how the tests cut it short).
/// </summary>
public sealed partial class VolumeTransactions(IMetadataStore store, IReadOnlyList<ITransactionParticipant> pools)
{
    private readonly Dictionary<string, ITransactionParticipant> _pools = pools.ToDictionary(p => p.Name, StringComparer.Ordinal);

    /// <summary>Called with a step name between the coordinator's durable steps (tests cut the process short there).</summary>
    public Func<string, Task>? Step { get; set; }

    /// <summary>
    /// Creates volume <paramref name="name"/> of <paramref name="size"/> bytes in segments of
    /// <paramref name="segmentBytes"/>, each with <paramref name="copies"/> copies placed by <paramref name="placement"/>.
    /// </summary>
    /// <exception cref="VolumeException">The name is taken, or a pool refused its part; nothing was created.</exception>
    public Task<SpannedVolume> CreateVolumeAsync(string name, long size, long segmentBytes, Placement placement, int copies = 1, CancellationToken cancellationToken = default)
        => CreateVolumeAsync(new SpannedVolume(name, size, segmentBytes, []), placement, copies, cancellationToken);

    /// <summary>
    /// Creates <paramref name="template"/>'s volume (its name, size, segment size, group, policy and pools; its segments
    /// are placed here) with <paramref name="copies"/> copies of each segment placed by <paramref name="placement"/>
    /// among <see cref="SpannedVolume.Pools"/> (every pool when null).
    /// </summary>
    /// <exception cref="VolumeException">The name is taken, a pool is unknown, or a pool refused its part; nothing was created.</exception>
    public async Task<SpannedVolume> CreateVolumeAsync(SpannedVolume template, Placement placement, int copies = 1, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(template);
        var (name, size, segmentBytes) = (template.Name, template.SizeBytes, template.SegmentBytes);
        ArgumentNullException.ThrowIfNull(placement);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentBytes, 1);
        // Its segments are pool volumes named tx-ID.c.NAME.NNNNNN while staged: 64 characters at most.
        if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-') || name[0] == '-')
            throw new VolumeException($"'{name}' is not a valid volume name: use 1 to {MaxNameLength} letters, digits, '_' or '-', not starting with '-'.");
        if ((await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false)).IsOk)
            throw new VolumeException($"Volume '{name}' exists; pick another name or delete it first.");
        int count = (int)((size + segmentBytes - 1) / segmentBytes);
        var candidates = await CandidatesAsync(template.Pools, cancellationToken).ConfigureAwait(false);
        IReadOnlyList<string[]> placed;
        try
        {
            placed = placement.Place(candidates, 0, count, copies, 1);
        }
        catch (PlacementException e)
        {
            throw new VolumeException($"Volume '{name}' cannot be placed: {e.Message}");
        }
        var volume = template with { Segments = placed };
        var involved = placed.SelectMany(s => s).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var work = involved.ToDictionary(p => p, p => new SegmentWork(
            [.. Enumerable.Range(0, count).Where(i => placed[i].Contains(p)).Select(i => (SpannedVolume.SegmentName(name, i), volume.SegmentSize(i)))]));
        await RunAsync(involved, work, new PutCommand(SpannedVolume.Key(name), volume.Encode(), ExpectedVersion: 0), $"Volume '{name}' was not created", cancellationToken).ConfigureAwait(false);
        return volume;
    }

    /// <summary>Deletes volume <paramref name="name"/>: its catalogue record and every copy of every segment, all or nothing.</summary>
    /// <exception cref="VolumeException">No such volume, or a pool refused (a segment is missing); nothing was deleted.</exception>
    public async Task DeleteVolumeAsync(string name, CancellationToken cancellationToken = default)
    {
        var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
        if (!read.IsOk)
            throw new VolumeException($"There is no volume '{name}'.");
        var volume = SpannedVolume.Decode(read.Value.Span);
        var involved = volume.Segments.SelectMany(s => s).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var work = involved.ToDictionary(p => p, p => new SegmentWork([])
        {
            Delete = [.. Enumerable.Range(0, volume.Segments.Count).Where(i => volume.Segments[i].Contains(p)).Select(i => SpannedVolume.SegmentName(name, i))],
        });
        // The volume's snapshot records go with it, in the same decision (the pools delete the segments' snapshots).
        var changes = (await SnapshotsOfAsync(name, cancellationToken).ConfigureAwait(false)).Select(s => (MetadataCommand)new DeleteCommand(s.Key, s.Version))
            .Prepend(new DeleteCommand(SpannedVolume.Key(name), read.Version)).ToList();
        await RunAsync(involved, work, changes, $"Volume '{name}' was not deleted", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The catalogue records of <paramref name="volume"/>'s snapshots.</summary>
    private Task<IReadOnlyList<KeyVersion>> SnapshotsOfAsync(string volume, CancellationToken cancellationToken)
        => store.ListAsync(SpannedSnapshot.Key(volume, ""), cancellationToken);

    /// <summary>
    /// Snapshots every volume of <paramref name="volumes"/> at one cut, as <paramref name="snapshot"/> on each of their
    /// segments in every pool: writes to the <paramref name="open"/> devices are held and drained, every pool stages its
    /// snapshots, writes go on, and the transaction commits (the catalogue records the snapshot of each volume with the
    /// group's name and time). Returns how long writes were held.
    /// </summary>
    /// <exception cref="VolumeException">A volume is unknown, the name is taken or bad, or a pool refused; nothing was taken.</exception>
    public async Task<TimeSpan> SnapshotGroupAsync(string snapshot, IReadOnlyList<string> volumes, IReadOnlyList<SpannedVolumeDevice>? open = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(volumes);
        if (string.IsNullOrEmpty(snapshot) || snapshot.Length > 46 || !snapshot.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.') || snapshot[0] is '.' or '-')
            throw new VolumeException($"'{snapshot}' is not a valid snapshot name: use 1 to 46 letters, digits, '.', '_' or '-', not starting with '.' or '-'.");
        var records = new List<SpannedVolume>();
        foreach (string name in volumes.Distinct(StringComparer.Ordinal))
        {
            var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
            if (!read.IsOk)
                throw new VolumeException($"There is no volume '{name}'.");
            if ((await store.ReadAsync(SpannedSnapshot.Key(name, snapshot), cancellationToken).ConfigureAwait(false)).IsOk)
                throw new VolumeException($"Volume '{name}' already has a snapshot '{snapshot}'.");
            records.Add(SpannedVolume.Decode(read.Value.Span));
            RefuseWhileBusy(records[^1], "snapshotted");
        }
        var involved = records.SelectMany(v => v.Segments.SelectMany(s => s)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var work = involved.ToDictionary(p => p, p => new SegmentWork([])
        {
            Snapshot = [.. records.SelectMany(v => Enumerable.Range(0, v.Segments.Count).Where(i => v.Segments[i].Contains(p)).Select(i => (SpannedVolume.SegmentName(v.Name, i), snapshot)))],
        });
        long time = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string[] group = [.. records.Select(v => v.Name)];
        var changes = records.Select(v => (MetadataCommand)new PutCommand(SpannedSnapshot.Key(v.Name, snapshot),
            new SpannedSnapshot(v.Name, snapshot, group, time) { SizeBytes = v.SizeBytes }.Encode(), ExpectedVersion: 0)).ToList();
        var held = TimeSpan.Zero;
        var devices = open ?? [];
        await RunAsync(involved, work, changes, $"Snapshot '{snapshot}' was not taken", cancellationToken, prepare: async prepareAll =>
        {
            // The cut: hold new writes, drain those in flight, let every pool take its snapshots in memory, release; the
            // pools make them durable (the prepare) with writes flowing again.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int released = 0;
            void Release()
            {
                if (Interlocked.Exchange(ref released, 1) != 0)
                    return;
                foreach (var device in devices)
                    device.ResumeWrites();
                held = clock.Elapsed;
            }
            await Task.WhenAll(devices.Select(d => d.PauseWritesAsync())).ConfigureAwait(false);
            try
            {
                await prepareAll(Release).ConfigureAwait(false);
            }
            finally
            {
                Release();   // a pool refused or the prepare was cut short before every pool cut
            }
        }).ConfigureAwait(false);
        return held;
    }

    /// <summary>
    /// Grows or shrinks volume <paramref name="name"/> to <paramref name="size"/> bytes. Growing enlarges its last
    /// segment and adds segments placed by <paramref name="placement"/>; shrinking drops the segments past the end and
    /// trims the last one. New bytes read as zeros; bytes past a shrink are gone.
    /// </summary>
    /// <exception cref="VolumeException">No such volume, a pool refused, a segment move is in progress, or the placement failed; the size is unchanged.</exception>
    public async Task<SpannedVolume> ResizeVolumeAsync(string name, long size, Placement placement, int copies = 1, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(placement);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
        if (!read.IsOk)
            throw new VolumeException($"There is no volume '{name}'.");
        var volume = SpannedVolume.Decode(read.Value.Span);
        RefuseWhileBusy(volume, "resized");
        if (size < volume.SizeBytes && await SnapshotsOfAsync(name, cancellationToken).ConfigureAwait(false) is { Count: > 0 } snapshots)
        {
            throw new VolumeException($"Volume '{name}' has snapshots ({string.Join(", ", snapshots.Select(s => s.Key[SpannedSnapshot.Key(name, "").Length..]))}) " +
                "that hold bytes past the new end; delete them first, or grow the volume instead.");
        }
        int had = volume.Segments.Count, count = (int)((size + volume.SegmentBytes - 1) / volume.SegmentBytes);
        var segments = volume.Segments.Take(Math.Min(had, count)).ToList();
        if (count > had)
        {
            var candidates = await CandidatesAsync(volume.Pools, cancellationToken).ConfigureAwait(false);
            try
            {
                segments.AddRange(placement.Place(candidates, had, count - had, copies, 1));
            }
            catch (PlacementException e)
            {
                throw new VolumeException($"Volume '{name}' cannot grow: {e.Message}");
            }
        }
        var resized = volume with { SizeBytes = size, Segments = segments };
        var involved = volume.Segments.Concat(segments).SelectMany(s => s).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var work = involved.ToDictionary(p => p, p => new SegmentWork(
            [.. Enumerable.Range(had, Math.Max(0, count - had)).Where(i => segments[i].Contains(p)).Select(i => (SpannedVolume.SegmentName(name, i), resized.SegmentSize(i)))])
        {
            Delete = [.. Enumerable.Range(count, Math.Max(0, had - count)).Where(i => volume.Segments[i].Contains(p)).Select(i => SpannedVolume.SegmentName(name, i))],
            Grow = [.. Enumerable.Range(0, Math.Min(had, count)).Where(i => segments[i].Contains(p) && resized.SegmentSize(i) > volume.SegmentSize(i))
                .Select(i => (SpannedVolume.SegmentName(name, i), resized.SegmentSize(i)))],
        });
        try
        {
            await RunAsync(involved, work, [new PutCommand(SpannedVolume.Key(name), resized.Encode(), read.Version)], $"Volume '{name}' was not resized", cancellationToken).ConfigureAwait(false);
        }
        catch (VolumeException)
        {
            await ReconcileAsync(name, cancellationToken).ConfigureAwait(false);   // aborted: shrink back what the prepare grew
            throw;
        }
        await StepAsync("before-reconcile").ConfigureAwait(false);
        await ReconcileAsync(name, cancellationToken).ConfigureAwait(false);   // committed: trim the last segment to its new size
        return resized;
    }

    /// <summary>
    /// The pools new segments may go to (<paramref name="allowed"/>, or every pool here), with their free space. Thin
    /// pools: a segment reserves no space up front, so free space only weighs the choice.
    /// </summary>
    private async Task<List<PoolCandidate>> CandidatesAsync(IReadOnlyList<string>? allowed, CancellationToken cancellationToken)
    {
        if (allowed is not null && allowed.FirstOrDefault(p => !_pools.ContainsKey(p)) is { } unknown)
            throw new VolumeException($"There is no pool '{unknown}' here; the pools are {string.Join(", ", _pools.Keys.Order(StringComparer.Ordinal))}.");
        var candidates = new List<PoolCandidate>();
        foreach (var pool in pools.Where(p => allowed is null || allowed.Contains(p.Name, StringComparer.Ordinal)))
        {
            try
            {
                candidates.Add(new PoolCandidate(pool.Name, Math.Max(1, await pool.FreeBytesAsync(cancellationToken).ConfigureAwait(false))));
            }
            catch (ParticipantUnavailableException e) when (allowed is null)
            {
                _ = e;   // a pool that does not answer gets no new segment
            }
            catch (ParticipantUnavailableException e)
            {
                throw new VolumeException($"Pool '{pool.Name}' was named but does not answer: {e.Message}");
            }
        }
        return candidates;
    }

    /// <summary>Gives every segment of <paramref name="name"/> in the pools here the size its catalogue record says.</summary>
    private async Task ReconcileAsync(string name, CancellationToken cancellationToken)
    {
        var read = await store.ReadAsync(SpannedVolume.Key(name), cancellationToken).ConfigureAwait(false);
        if (!read.IsOk)
            return;
        var volume = SpannedVolume.Decode(read.Value.Span);
        foreach (var pool in pools)
        {
            try
            {
                await pool.ReconcileAsync(volume, cancellationToken).ConfigureAwait(false);
            }
            catch (ParticipantUnavailableException)
            {
                // Its node reconciles its own pools when it is back.
            }
        }
    }

    /// <summary>Longest volume name: its staged segment names must fit a pool's 64 characters.</summary>
    public const int MaxNameLength = 39;

    /// <summary>
    /// One transaction: begin (with <paramref name="change"/>), prepare each pool, decide (the commit point, applying the
    /// change), notify, forget; aborts on a no vote or a refused change and throws <see cref="VolumeException"/>.
    /// </summary>
    private Task RunAsync(IReadOnlyList<string> involved, Dictionary<string, SegmentWork> work, MetadataCommand change, string failure, CancellationToken cancellationToken)
        => RunAsync(involved, work, [change], failure, cancellationToken);

    private async Task RunAsync(IReadOnlyList<string> involved, Dictionary<string, SegmentWork> work, IReadOnlyList<MetadataCommand> changes, string failure,
        CancellationToken cancellationToken, Func<Func<Action?, Task>, Task>? prepare = null, Func<Func<Task<bool>>, Task>? decide = null)
    {
        string transaction = Guid.NewGuid().ToString("N")[..12];
        await StepAsync("before-begin").ConfigureAwait(false);
        Check(await store.ExecuteAsync(new BeginTransactionCommand(transaction, involved) { Changes = changes }, cancellationToken).ConfigureAwait(false), "begin");
        await StepAsync("after-begin").ConfigureAwait(false);

        string? refusal = null;
        // Every pool prepares at once; the first no vote is the one reported. allCut runs when every pool has taken its
        // snapshots in memory.
        Task PrepareAll(Action? allCut)
        {
            int uncut = involved.Count;
            void Cut()
            {
                if (Interlocked.Decrement(ref uncut) == 0)
                    allCut?.Invoke();
            }
            return Task.WhenAll(involved.Select(Prepare));

            async Task Prepare(string pool)
            {
                try
                {
                    await _pools[pool].PrepareAsync(transaction, work[pool], Cut, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception e) when (e is PoolConfigurationException or PoolFullException or IOException)
                {
                    Interlocked.CompareExchange(ref refusal, $"pool '{pool}' refused: {e.Message}", null);
                }
            }
        }
        if (prepare is null)
            await PrepareAll(null).ConfigureAwait(false);
        else
            await prepare(PrepareAll).ConfigureAwait(false);
        await StepAsync("after-prepare").ConfigureAwait(false);
        if (refusal is null)
        {
            CommandResult? decided = null;
            async Task<bool> Decide()
            {
                decided = await store.ExecuteAsync(new DecideTransactionCommand(transaction, Commit: true), cancellationToken).ConfigureAwait(false);
                return decided.IsOk;
            }
            if (decide is null)
                await Decide().ConfigureAwait(false);
            else
                await decide(Decide).ConfigureAwait(false);
            if (decided is null)
                throw new InvalidOperationException("The decision step was skipped.");
            if (decided.IsOk)
            {
                await StepAsync("after-decide").ConfigureAwait(false);
                await FinishAsync(transaction, involved, commit: true, cancellationToken).ConfigureAwait(false);
                return;
            }
            refusal = decided.Message ?? decided.Code.ToString();
        }
        // Not found: another node's recovery presumed this coordinator dead, aborted and forgot the transaction (it never
        // commits what is undecided), so abort it is.
        Check(await store.ExecuteAsync(new DecideTransactionCommand(transaction, Commit: false), cancellationToken).ConfigureAwait(false), "abort", allowNotFound: true);
        await FinishAsync(transaction, involved, commit: false, cancellationToken).ConfigureAwait(false);
        throw new VolumeException($"{failure} ({refusal}); nothing was changed.");
    }

    /// <summary>
    /// Resolves every transaction left by a crash: those in the metadata service and those any pool holds prepared.
    /// No decision (or no record: presumed abort) → abort; committed → commit everywhere; then forget it once every
    /// participant has done its part. Returns the transactions resolved.
    /// </summary>
    /// <param name="mayAbort">
    /// Whether an undecided transaction may be aborted now; null: every one (one node, whose coordinator is this
    /// process, restarting). With several coordinators, an undecided transaction is aborted only once it has been
    /// undecided long enough that its coordinator is presumed dead; if the coordinator is alive after all, its commit
    /// decision is refused (the abort came first in the log) and it aborts too.
    /// </param>
    /// <param name="reconcile">Also give every segment the size the catalogue says (after a resize cut short).</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    public async Task<IReadOnlyList<(string Transaction, bool Committed)>> RecoverAsync(Func<string, bool>? mayAbort = null, bool reconcile = true, CancellationToken cancellationToken = default)
    {
        var prepared = new Dictionary<string, List<string>>(StringComparer.Ordinal);   // transaction → pools holding it prepared
        foreach (var pool in pools)
        {
            try
            {
                foreach (string transaction in await pool.PreparedAsync(cancellationToken).ConfigureAwait(false))
                    (prepared.TryGetValue(transaction, out var holders) ? holders : prepared[transaction] = []).Add(pool.Name);
            }
            catch (ParticipantUnavailableException)
            {
                // Its node resolves what it holds when it is back.
            }
        }
        var ids = (await store.ListAsync("tx/", cancellationToken).ConfigureAwait(false)).Select(k => k.Key["tx/".Length..])
            .Concat(prepared.Keys).Distinct(StringComparer.Ordinal).ToList();
        var resolved = new List<(string, bool)>();
        foreach (string transaction in ids)
        {
            var read = await store.ReadAsync(MetadataStateMachine.TransactionKey(transaction), cancellationToken).ConfigureAwait(false);
            var record = read.IsOk ? MetadataCodec.DecodeTransaction(read.Value.Span) : null;
            if (record is { State: TransactionState.Pending })
            {
                if (mayAbort is not null && !mayAbort(transaction))
                    continue;   // its coordinator may still be at work
                var aborted = await store.ExecuteAsync(new DecideTransactionCommand(transaction, Commit: false), cancellationToken).ConfigureAwait(false);
                if (!aborted.IsOk)   // decided meanwhile: read what
                {
                    var again = await store.ReadAsync(MetadataStateMachine.TransactionKey(transaction), cancellationToken).ConfigureAwait(false);
                    record = again.IsOk ? MetadataCodec.DecodeTransaction(again.Value.Span) : null;
                }
                else
                {
                    record = record with { State = TransactionState.Aborted };
                }
            }
            bool commit = record?.State == TransactionState.Committed;
            var involved = record?.Participants ?? prepared.GetValueOrDefault(transaction) ?? [];
            // A committed record another coordinator may still be waiting to hear about (its decision's reply was lost
            // with a leader) is forgotten only once it may be presumed gone: a coordinator that finds its transaction
            // unknown takes it as aborted.
            bool forget = record is not null && (mayAbort is null || !commit || mayAbort(transaction));
            await FinishAsync(transaction, involved, commit, cancellationToken, forget).ConfigureAwait(false);
            resolved.Add((transaction, commit));
        }
        if (reconcile)
            await ReconcileAllAsync(cancellationToken).ConfigureAwait(false);
        return resolved;
    }

    /// <summary>Gives every segment in these pools the size the catalogue says (a resize cut short leaves segments at the other size).</summary>
    public async Task ReconcileAllAsync(CancellationToken cancellationToken = default)
    {
        foreach (var key in await store.ListAsync("spanned/", cancellationToken).ConfigureAwait(false))
            await ReconcileAsync(key.Key["spanned/".Length..], cancellationToken).ConfigureAwait(false);
    }

    private async Task FinishAsync(string transaction, IReadOnlyList<string> involved, bool commit, CancellationToken cancellationToken, bool forget = true)
    {
        bool everyPool = true;
        foreach (string pool in involved)
        {
            if (!_pools.TryGetValue(pool, out var participant))
            {
                everyPool = false;   // not here (offline, or another node's): the record stays until it is resolved too
                continue;
            }
            try
            {
                if (commit)
                    await participant.CommitAsync(transaction, cancellationToken).ConfigureAwait(false);
                else
                    await participant.AbortAsync(transaction, cancellationToken).ConfigureAwait(false);
            }
            catch (ParticipantUnavailableException)
            {
                everyPool = false;   // its node is down: it asks the metadata service when it is back
            }
        }
        await StepAsync(commit ? "before-forget" : "before-forget-abort").ConfigureAwait(false);
        if (forget && everyPool)
            Check(await store.ExecuteAsync(new ForgetTransactionCommand(transaction), cancellationToken).ConfigureAwait(false), "forget", allowNotFound: true);
    }

    private static void Check(CommandResult result, string step, bool allowNotFound = false)
    {
        if (!result.IsOk && !(allowNotFound && result.Code == ResultCode.NotFound))
            throw new VolumeException($"The metadata service refused the transaction's {step}: {result.Message}");
    }

    private Task StepAsync(string step) => Step?.Invoke(step) ?? Task.CompletedTask;
}
