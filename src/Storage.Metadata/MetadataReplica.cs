using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>
/// One metadata replica: the consensus core driven by real time, a durable log directory, a transport,
/// and the metadata state machine, on one event-loop thread.
/// </summary>
/// <remarks>
/// The loop ticks the core from a monotonic clock (catching up missed ticks before it handles anything,
/// so a stalled process never trusts a stale lease), feeds it messages and requests, and carries out
/// each Ready in order: append and fsync, then send, then apply, then advance. Public methods are
/// thread-safe; results complete off the loop thread.
/// </remarks>
public sealed class MetadataReplica : IMetadataStore, IDisposable
{
    private readonly MetadataReplicaOptions _o;
    private readonly ITransport _transport;
    private readonly BlockingCollection<Action> _inputs = [];
    private readonly Dictionary<(long Session, long Seq), TaskCompletionSource<CommandResult>> _pending = [];
    private readonly ConcurrentDictionary<Watcher, byte> _watchers = new();
    private readonly Stopwatch _clock = new();
    private readonly SessionTracker _session = new();
    private readonly List<WatchEvent> _events = [];
    private long _ticksDone;
    private DurableLog? _log;
    private PaxosCore? _core;
    private MetadataStateMachine _state = new();
    private Thread? _thread;
    private volatile bool _stopping;
    private volatile ReplicaStatus? _status;

    /// <summary>Creates a replica; <see cref="Start"/> opens its directory and joins the group.</summary>
    public MetadataReplica(MetadataReplicaOptions options, ITransport transport)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(transport);
        _o = options;
        _transport = transport;
    }

    /// <summary>The replica id.</summary>
    public int Id => _o.Id;

    /// <summary>The latest status (refreshed by the loop after every batch of work).</summary>
    public ReplicaStatus Status => _status ?? throw new InvalidOperationException("Not started.");

    /// <summary>Whether it currently believes it leads.</summary>
    public bool IsLeader => _status?.Consensus.Role == Role.Leader;

    /// <summary>Opens the log directory, restores the state, and starts the event loop and the transport.</summary>
    public void Start()
    {
        var dir = _o.LogDirectory ?? new FileLogDirectory(_o.Directory);
        // A clock reading is an incarnation larger than any earlier one of this replica.
        _log = DurableLog.Open(dir, _o.Id, _o.Bootstrap, Math.Max(1, DateTime.UtcNow.Ticks));
        var persisted = _log.State;
        _core = new PaxosCore(new ConsensusOptions
        {
            Id = _o.Id,
            Incarnation = _log.Incarnation,
            InitialConfig = _o.InitialConfig,
            ElectionTicks = _o.ElectionTicks,
            HeartbeatTicks = _o.HeartbeatTicks,
            LeaseTicks = _o.LeaseTicks,
            MaxBatchCommands = _o.Batching ? 1024 : 1,
            MaxInflightSlots = _o.MaxInflightSlots,
            JitterSeed = (ulong)Random.Shared.NextInt64(),
        }, persisted);
        if (persisted.Snapshot is { } snap)
        {
            _state = MetadataStateMachine.Restore(snap.Data.Span);
            _state.AppliedIndex = snap.Index;
        }
        PublishStatus();
        _transport.Start(m => Post(() => _core.Step(m)));
        _clock.Start();
        _thread = new Thread(Loop) { IsBackground = true, Name = $"meta-replica-{_o.Id}" };
        _thread.Start();
    }

    /// <summary>
    /// Executes a command through the log (linearizable; compare-and-set through expected versions).
    /// </summary>
    /// <exception cref="NotLeaderException">This replica is not the leader.</exception>
    /// <exception cref="TimeoutException">No result within <see cref="MetadataReplicaOptions.RequestTimeout"/>
    /// (the command may still be applied later; retry with the same id through the cluster client).</exception>
    public async Task<CommandResult> ExecuteAsync(MetadataCommand command, CancellationToken cancellationToken = default)
    {
        var (seq, acked) = _session.Next();
        try
        {
            return await ExecuteAsync(new Envelope(_session.Session, seq, command, acked), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _session.Done(seq);
        }
    }

    /// <summary>Executes a command under a caller-chosen (session, seq), so a retry elsewhere is applied once.</summary>
    internal Task<CommandResult> ExecuteAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(envelope.Command);
        var (session, seq) = (envelope.Session, envelope.Seq);
        var tcs = new TaskCompletionSource<CommandResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        byte[] encoded = MetadataCodec.Encode(envelope);
        Post(() =>
        {
            var core = _core!;
            if (!core.IsLeader)
            {
                tcs.TrySetException(new NotLeaderException(core.LeaderId));
                return;
            }
            if (!_pending.TryAdd((session, seq), tcs))
                _pending[(session, seq)] = tcs;
            core.Propose(encoded);
        });
        return WithTimeout(tcs, (session, seq), cancellationToken);
    }

    /// <summary>
    /// Reads a key linearizably: from local state under the leader's lease when it holds one, else
    /// through the log.
    /// </summary>
    /// <exception cref="NotLeaderException">This replica is not the leader.</exception>
    public Task<CommandResult> ReadAsync(string key, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        var (seq, acked) = _session.Next();
        var tcs = new TaskCompletionSource<CommandResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            var core = _core!;
            CatchUpTicks();
            if (!core.IsLeader)
                tcs.TrySetException(new NotLeaderException(core.LeaderId));
            else if (core.TryLeaseRead(out long index) && _state.AppliedIndex >= index)
                tcs.TrySetResult(_state.Read(key));
            else
            {
                _pending[(_session.Session, seq)] = tcs;
                core.Propose(MetadataCodec.Encode(new Envelope(_session.Session, seq, new ReadCommand(key), acked)));
            }
        });
        return Finish(WithTimeout(tcs, (_session.Session, seq), cancellationToken), seq);
    }

    private async Task<CommandResult> Finish(Task<CommandResult> task, long seq)
    {
        try
        {
            return await task.ConfigureAwait(false);
        }
        finally
        {
            _session.Done(seq);
        }
    }

    /// <summary>
    /// Proposes a membership change (one member added, removed, or given a new incarnation) as a log
    /// entry; it takes effect for the slots after it once chosen. Watch <see cref="Status"/> for it.
    /// </summary>
    /// <returns>False when this replica is not the leader or another change is pending.</returns>
    /// <exception cref="ArgumentException"><paramref name="next"/> changes more than one member.</exception>
    public Task<bool> ProposeConfigurationAsync(Configuration next)
    {
        ArgumentNullException.ThrowIfNull(next);
        var tcs = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            try
            {
                tcs.TrySetResult(_core!.ProposeConfigChange(next));
            }
            catch (ArgumentException e)
            {
                tcs.TrySetException(e);
            }
        });
        return tcs.Task;
    }

    /// <summary>The keys under <paramref name="prefix"/>, linearizably: under the leader's lease, or after a read through the log.</summary>
    /// <exception cref="NotLeaderException">This replica is not the leader.</exception>
    public async Task<IReadOnlyList<KeyVersion>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var tcs = new TaskCompletionSource<IReadOnlyList<KeyVersion>?>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() =>
        {
            var core = _core!;
            CatchUpTicks();
            if (!core.IsLeader)
                tcs.TrySetException(new NotLeaderException(core.LeaderId));
            else if (core.TryLeaseRead(out long index) && _state.AppliedIndex >= index)
                tcs.TrySetResult(List(prefix));
            else
                tcs.TrySetResult(null);
        });
        if (await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false) is { } listed)
            return listed;
        await ReadAsync(prefix, cancellationToken).ConfigureAwait(false);   // through the log: applied here once it returns
        return await QueryAsync(_ => List(prefix)).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private KeyVersion[] List(string prefix) => [.. _state.List(prefix).Select(k => new KeyVersion(k.Key, k.Version))];

    /// <summary>A consistent view of the state machine for typed queries; runs on the loop thread.</summary>
    public Task<T> QueryAsync<T>(Func<MetadataStateMachine, T> query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(() => tcs.TrySetResult(query(_state)));
        return tcs.Task;
    }

    /// <summary>
    /// Calls <paramref name="handler"/> for every change applied under <paramref name="prefix"/>, in
    /// revision order, on a background task (never on the replica's loop). Dispose to stop.
    /// </summary>
    public IDisposable Watch(string prefix, Action<WatchEvent> handler)
    {
        var w = new Watcher(prefix, handler, this);
        _watchers[w] = 0;
        return w;
    }

    private async Task<CommandResult> WithTimeout(TaskCompletionSource<CommandResult> tcs, (long, long) id, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_o.RequestTimeout);
        try
        {
            return await tcs.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            Post(() => _pending.Remove(id));
            if (cancellationToken.IsCancellationRequested)
                throw;
            throw new TimeoutException($"No result from replica {_o.Id} within {_o.RequestTimeout}; the command may still be applied.");
        }
    }

    private void Post(Action input)
    {
        if (!_inputs.IsAddingCompleted)
        {
            try
            {
                _inputs.Add(input);
            }
            catch (InvalidOperationException)
            {
                // Stopping.
            }
        }
    }

    private void CatchUpTicks()
    {
        long due = _clock.ElapsedTicks / (long)(_o.TickInterval.TotalSeconds * Stopwatch.Frequency);
        for (; _ticksDone < due; _ticksDone++)
            _core!.Tick();
    }

    private void Loop()
    {
        long tickTicks = (long)(_o.TickInterval.TotalSeconds * Stopwatch.Frequency);
        while (!_stopping)
        {
            CatchUpTicks();
            DrainReady();
            // Round the wait up: waking a little after the tick is due costs nothing (lease reads catch up on
            // the clock first), while rounding down would spin through the last millisecond of every tick.
            long remaining = (_ticksDone + 1) * tickTicks - _clock.ElapsedTicks;
            long wait = remaining <= 0 ? 0 : (remaining * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency;
            if (_inputs.TryTake(out var first, (int)Math.Min(wait, 1000)))
            {
                first();
                for (int n = 0; n < 4096 && _inputs.TryTake(out var next); n++)
                    next();
            }
            DrainReady();
            PublishStatus();
        }
    }

    private void DrainReady()
    {
        var core = _core!;
        while (core.HasReady())
        {
            var rd = core.GetReady();
            _log!.Append(rd);
            if (rd.MustSync)
                _log.Sync();
            foreach (var m in rd.Messages)
                _transport.Send(m);
            if (rd.InstallSnapshot)
            {
                _state = MetadataStateMachine.Restore(rd.Snapshot!.Data.Span);
                _state.AppliedIndex = rd.Snapshot.Index;
            }
            foreach (var entry in rd.Committed)
                Apply(entry);
            core.Advance();
            if (_state.AppliedIndex - core.SnapshotIndex >= _o.SnapshotEvery && _state.AppliedIndex == core.AppliedIndex)
                core.Compact(_state.AppliedIndex, _state.Serialize());
        }
    }

    private void Apply(CommittedEntry entry)
    {
        if (entry.Slot <= _state.AppliedIndex)
            return;
        foreach (var command in entry.Value.Commands)
        {
            _events.Clear();
            var (result, session, seq, _) = _state.Apply(command.Span, _events);
            if (_pending.Remove((session, seq), out var tcs))
                tcs.TrySetResult(result);
            foreach (var e in _events)
                foreach (var w in _watchers.Keys)
                    if (e.Key.StartsWith(w.Prefix, StringComparison.Ordinal))
                        w.Queue.Writer.TryWrite(e);
        }
        _state.AppliedIndex = entry.Slot;
    }

    private void PublishStatus() => _status = new ReplicaStatus(_core!.Status(), _state.Revision, _state.Count, _log!.Outcome);

    /// <summary>Stops the loop and the transport and closes the log. Pending requests time out.</summary>
    public void Dispose()
    {
        _stopping = true;
        _inputs.CompleteAdding();
        _thread?.Join();
        _transport.Dispose();
        _log?.Dispose();
        foreach (var w in _watchers.Keys)
            w.Dispose();
        _inputs.Dispose();
    }

    private sealed class Watcher : IDisposable
    {
        public readonly string Prefix;
        public readonly Channel<WatchEvent> Queue = Channel.CreateUnbounded<WatchEvent>(new UnboundedChannelOptions { SingleReader = true });
        private readonly MetadataReplica _owner;

        public Watcher(string prefix, Action<WatchEvent> handler, MetadataReplica owner)
        {
            Prefix = prefix;
            _owner = owner;
            _ = Task.Run(async () =>
            {
                await foreach (var e in Queue.Reader.ReadAllAsync().ConfigureAwait(false))
                    handler(e);
            });
        }

        public void Dispose()
        {
            _owner._watchers.TryRemove(this, out _);
            Queue.Writer.TryComplete();
        }
    }
}
