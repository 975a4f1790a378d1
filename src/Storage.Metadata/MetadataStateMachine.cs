using Storage.Native;
using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>
/// The replicated metadata state: a versioned key-value store (compare-and-set on versions, watches)
/// holding pools, volumes and their extents, snapshots, and two-phase-commit transaction records.
/// Deterministic: every replica that applies the same commands in the same order holds the same bytes.
/// </summary>
/// <remarks>
/// Each successful mutation bumps <see cref="Revision"/>; a key's version is the revision that last wrote
/// it (0 when absent). Commands carry (session, seq); a command at or below its session's last seq is not
/// applied again, and its recorded result is returned, so clients can retry safely.
/// Not thread-safe: the replica's event loop owns it.
/// </remarks>
public sealed partial class MetadataStateMachine
{
    private readonly SortedDictionary<string, (byte[] Value, long Version)> _items = new(StringComparer.Ordinal);
    private readonly SortedDictionary<long, Session> _sessions = [];

    /// <summary>Results a client may still ask for again: every seq above <see cref="Forgotten"/>.</summary>
    private sealed class Session
    {
        public long Forgotten;
        public readonly SortedDictionary<long, CommandResult> Results = [];
    }

    /// <summary>
    /// Most results kept per session. Results normally go as soon as the client reports it has them
    /// (AckedThrough); this bound only stops a client that never does from growing the state without end.
    /// Beyond it the oldest are forgotten, and a retry of one is refused as too old.
    /// </summary>
    internal const int SessionWindow = 100_000;

    /// <summary>Successful mutations so far.</summary>
    public long Revision { get; private set; }

    /// <summary>The last log slot applied.</summary>
    public long AppliedIndex { get; internal set; }

    /// <summary>Keys stored.</summary>
    public int Count => _items.Count;

    /// <summary>Applies one encoded command (as proposed through the log).</summary>
    /// <param name="command">The encoded envelope.</param>
    /// <param name="events">Receives a watch event per key changed.</param>
    /// <returns>The result, the command's (session, seq), and whether it was applied now (not a replay).</returns>
    internal (CommandResult Result, long Session, long Seq, bool Fresh) Apply(ReadOnlySpan<byte> command, List<WatchEvent> events)
    {
        Envelope e;
        try
        {
            e = MetadataCodec.Decode(command);
        }
        catch (FormatException ex)
        {
            return (Fail(ResultCode.Invalid, "undecodable command: " + ex.Message), 0, 0, false);
        }
        if (!_sessions.TryGetValue(e.Session, out var session))
            _sessions[e.Session] = session = new Session();
        (CommandResult, long, long, bool) outcome;
        if (e.Seq <= session.Forgotten)
            outcome = (Fail(ResultCode.Invalid, "request too old to tell whether it was applied"), e.Session, e.Seq, false);
        else if (session.Results.TryGetValue(e.Seq, out var earlier))
            outcome = (earlier, e.Session, e.Seq, false);
        else
        {
            var result = Execute(e.Command, events);
            session.Results[e.Seq] = result;
            outcome = (result, e.Session, e.Seq, true);
        }
        // The client has every answer through AckedThrough: those results can go.
        long forget = Math.Max(session.Forgotten, Math.Min(e.AckedThrough, e.Seq - 1));
        while (session.Results.Count > 0)
        {
            long oldest = session.Results.Keys.First();
            if (oldest > forget && session.Results.Count <= SessionWindow)
                break;
            session.Results.Remove(oldest);
            forget = Math.Max(forget, oldest);
        }
        session.Forgotten = forget;
        return outcome;
    }

    private CommandResult Execute(MetadataCommand command, List<WatchEvent> events) => command switch
    {
        PutCommand c => Put(c.Key, c.Value.ToArray(), c.ExpectedVersion, events),
        DeleteCommand c => Delete(c.Key, c.ExpectedVersion, events),
        ReadCommand c => Read(c.Key),
        CreatePoolCommand c => CreatePool(c, events),
        AddArrayMemberCommand c => ChangeMember(c.Pool, c.ArrayId, c.Device, add: true, events),
        RemoveArrayMemberCommand c => ChangeMember(c.Pool, c.ArrayId, c.Device, add: false, events),
        DeletePoolCommand c => DeletePool(c.Name, events),
        CreateVolumeCommand c => CreateVolume(c, events),
        ResizeVolumeCommand c => ResizeVolume(c, events),
        DeleteVolumeCommand c => DeleteVolume(c.Name, events),
        MapExtentCommand c => MapExtent(c, events),
        UnmapExtentCommand c => UnmapExtent(c, events),
        CreateSnapshotCommand c => CreateSnapshot(c, events),
        DeleteSnapshotCommand c => DeleteSnapshot(c, events),
        BeginTransactionCommand c => BeginTransaction(c, events),
        DecideTransactionCommand c => DecideTransaction(c, events),
        ForgetTransactionCommand c => ForgetTransaction(c, events),
        _ => Fail(ResultCode.Invalid, "unknown command"),
    };

    /// <summary>The current value and version of <paramref name="key"/> (version 0 and no value when absent).</summary>
    public CommandResult Read(string key) => _items.TryGetValue(key, out var item)
        ? new CommandResult(ResultCode.Ok, null, item.Version, Revision, item.Value)
        : new CommandResult(ResultCode.NotFound, $"{key} does not exist", 0, Revision, ReadOnlyMemory<byte>.Empty);

    /// <summary>The keys under <paramref name="prefix"/> with their versions, in order.</summary>
    public IReadOnlyList<(string Key, long Version)> List(string prefix) =>
        [.. _items.Where(p => p.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(p => (p.Key, p.Value.Version))];

    private CommandResult Put(string key, byte[] value, long expected, List<WatchEvent> events)
    {
        if (string.IsNullOrEmpty(key))
            return Fail(ResultCode.Invalid, "empty key");
        long current = _items.TryGetValue(key, out var item) ? item.Version : 0;
        if (expected >= 0 && expected != current)
            return Fail(ResultCode.VersionMismatch, $"{key} is at version {current}, not {expected}", current);
        return Write(key, value, events);
    }

    private CommandResult Delete(string key, long expected, List<WatchEvent> events)
    {
        if (!_items.TryGetValue(key, out var item))
            return Fail(ResultCode.NotFound, $"{key} does not exist");
        if (expected >= 0 && expected != item.Version)
            return Fail(ResultCode.VersionMismatch, $"{key} is at version {item.Version}, not {expected}", item.Version);
        return Remove(key, events);
    }

    private CommandResult Write(string key, byte[] value, List<WatchEvent> events)
    {
        Remember(key);
        Revision++;
        _items[key] = (value, Revision);
        events.Add(new WatchEvent(key, false, Revision, Revision, value));
        return new CommandResult(ResultCode.Ok, null, Revision, Revision, ReadOnlyMemory<byte>.Empty);
    }

    private CommandResult Remove(string key, List<WatchEvent> events)
    {
        Remember(key);
        Revision++;
        _items.Remove(key);
        events.Add(new WatchEvent(key, true, 0, Revision, ReadOnlyMemory<byte>.Empty));
        return new CommandResult(ResultCode.Ok, null, 0, Revision, ReadOnlyMemory<byte>.Empty);
    }

    /// <summary>While <see cref="ApplyAllOrNone"/> runs: each key's state before its first change, to put back on failure.</summary>
    private Dictionary<string, (byte[] Value, long Version)?>? _undo;

    private void Remember(string key)
    {
        if (_undo is not null && !_undo.ContainsKey(key))
            _undo[key] = _items.TryGetValue(key, out var item) ? item : null;
    }

    /// <summary>
    /// Applies <paramref name="commands"/> in order as one change: when one fails, every key, the revision and the
    /// events are put back as they were, and its index and result are returned.
    /// </summary>
    private (int Failed, CommandResult Result) ApplyAllOrNone(IReadOnlyList<MetadataCommand> commands, List<WatchEvent> events)
    {
        _undo = new Dictionary<string, (byte[] Value, long Version)?>(StringComparer.Ordinal);
        long revision = Revision;
        int eventCount = events.Count;
        try
        {
            for (int i = 0; i < commands.Count; i++)
            {
                var result = Execute(commands[i], events);
                if (result.Code == ResultCode.Ok)
                    continue;
                foreach (var (key, before) in _undo)
                {
                    if (before is { } item)
                        _items[key] = item;
                    else
                        _items.Remove(key);
                }
                Revision = revision;
                events.RemoveRange(eventCount, events.Count - eventCount);
                return (i, result);
            }
            return (-1, default!);
        }
        finally
        {
            _undo = null;
        }
    }

    private CommandResult Fail(ResultCode code, string message, long version = 0) =>
        new(code, message, version, Revision, ReadOnlyMemory<byte>.Empty);

    /// <summary>Serializes the whole state (items, sessions, revision) for a snapshot.</summary>
    public byte[] Serialize()
    {
        var w = new ByteWriter(1 << 12);
        w.I64(Revision);
        w.I64(AppliedIndex);
        w.I32(_items.Count);
        foreach (var (key, (value, version)) in _items)
        {
            w.String(key);
            w.Bytes(value);
            w.I64(version);
        }
        w.I32(_sessions.Count);
        foreach (var (id, session) in _sessions)
        {
            w.I64(id);
            w.I64(session.Forgotten);
            w.I32(session.Results.Count);
            foreach (var (seq, result) in session.Results)
            {
                w.I64(seq);
                MetadataCodec.Write(w, result);
            }
        }
        return w.Written.ToArray();
    }

    /// <summary>Rebuilds a state machine from <see cref="Serialize"/>'s output.</summary>
    /// <exception cref="FormatException">The data is not a serialized state.</exception>
    public static MetadataStateMachine Restore(ReadOnlySpan<byte> data)
    {
        var r = new ByteReader(data);
        var m = new MetadataStateMachine { Revision = r.I64(), AppliedIndex = r.I64() };
        int items = r.Count(16);
        for (int i = 0; i < items; i++)
            m._items[r.String()] = (r.Bytes(), r.I64());
        int sessions = r.Count(16);
        for (int i = 0; i < sessions; i++)
        {
            var session = new Session();
            m._sessions[r.I64()] = session;
            session.Forgotten = r.I64();
            int results = r.Count(8);
            for (int j = 0; j < results; j++)
                session.Results[r.I64()] = MetadataCodec.ReadResult(ref r);
        }
        return m;
    }

    /// <summary>A CRC-32C of the serialized state: equal on replicas that applied the same prefix.</summary>
    public uint Checksum() => Crc32C.Compute(Serialize());
}
