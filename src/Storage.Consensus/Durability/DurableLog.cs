using Storage.Native;
using System.Buffers.Binary;

namespace Storage.Consensus;

/// <summary>How <see cref="DurableLog.Open"/> found the directory.</summary>
public enum RecoveryOutcome
{
    /// <summary>Empty directory: a new replica state was created.</summary>
    New,

    /// <summary>The state was read back (a torn tail, if any, was cut).</summary>
    Recovered,

    /// <summary>
    /// The state was unreadable (a corrupt record with valid data after it, a missing or corrupt snapshot):
    /// it was discarded and a new incarnation created, which must not vote until re-admitted.
    /// </summary>
    Reset,
}

/// <summary>
/// A replica's durable consensus state in one directory: an append-only log file of CRC-32C-checksummed
/// records (identity, hard states, accepted records, snapshot markers) and a snapshot file.
/// </summary>
/// <remarks>
/// <para>Record frame: <c>u32 length | u32 crc32c(type ‖ body) | u8 type | body</c>, little-endian.
/// On open, a bad frame with no valid frame after it is a torn write (it was never fsynced, so nothing
/// that was sent depends on it) and is cut; a bad frame followed by valid ones is corruption, and the
/// state is discarded in favour of a fresh incarnation. A corrupted <em>final</em> record cannot be told
/// from a torn write; that case is not detected.</para>
/// <para>Compaction writes the snapshot file atomically, then rewrites the log atomically with only the
/// records after the snapshot. Not thread-safe: one driver thread uses it.</para>
/// </remarks>
public sealed class DurableLog : IDisposable
{
    /// <summary>The log file's name inside the directory.</summary>
    public const string LogFileName = "paxos.wal";

    /// <summary>The snapshot file's name inside the directory.</summary>
    public const string SnapshotFileName = "paxos.snap";

    private const byte TypeIdentity = 1;
    private const byte TypeHardState = 2;
    private const byte TypeRecord = 3;
    private const byte TypeSnapshotMark = 4;
    private const uint Magic = 0x47_4C_58_50; // "PXLG"
    private const int HeaderBytes = 8;
    private const int MaxFrameBytes = 256 << 20;

    private readonly ILogDirectory _dir;
    private readonly Dictionary<long, LogRecord> _records = [];
    private readonly ByteWriter _buffer = new(1 << 16);
    private ILogFile _log;
    private HardState _hard;
    private Snapshot? _snapshot;
    private long _snapshotMark;

    private DurableLog(ILogDirectory dir, int replicaId, long incarnation)
    {
        _dir = dir;
        ReplicaId = replicaId;
        Incarnation = incarnation;
        _log = null!;
    }

    /// <summary>The replica id the directory belongs to.</summary>
    public int ReplicaId { get; }

    /// <summary>The incarnation of the state in the directory.</summary>
    public long Incarnation { get; }

    /// <summary>How the directory was found.</summary>
    public RecoveryOutcome Outcome { get; private set; }

    /// <summary>Why the state was reset, when <see cref="Outcome"/> is <see cref="RecoveryOutcome.Reset"/>.</summary>
    public string? ResetReason { get; private set; }

    /// <summary>Bytes of torn tail cut on open.</summary>
    public long TornBytesCut { get; private set; }

    /// <summary>The records in the log now (latest per slot after the snapshot).</summary>
    public int RecordCount => _records.Count;

    /// <summary>What was recovered, for <see cref="PaxosCore"/>'s constructor (and the snapshot for the application).</summary>
    public PersistentState State => new() { HardState = _hard, Records = [.. _records.Values], Snapshot = _snapshot };

    /// <summary>
    /// Opens (or creates) the state of replica <paramref name="replicaId"/> in <paramref name="dir"/>.
    /// </summary>
    /// <param name="dir">The directory.</param>
    /// <param name="replicaId">The replica id; must match an existing directory's.</param>
    /// <param name="bootstrap">An empty directory is a founding member (incarnation 0) rather than a
    /// replica that lost its disk.</param>
    /// <param name="freshIncarnation">The incarnation for a state created after a loss or reset; must be
    /// positive and larger than any this replica id used before (a clock reading works).</param>
    /// <exception cref="InvalidDataException">The directory holds another replica's state.</exception>
    public static DurableLog Open(ILogDirectory dir, int replicaId, bool bootstrap, long freshIncarnation)
    {
        ArgumentNullException.ThrowIfNull(dir);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(replicaId);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(freshIncarnation);
        byte[]? log = dir.ReadAll(LogFileName);
        byte[]? snap = dir.ReadAll(SnapshotFileName);
        if (log is null)
        {
            if (snap is not null)
                return Reset(dir, replicaId, freshIncarnation, "snapshot without a log");
            var created = Create(dir, replicaId, bootstrap ? 0 : freshIncarnation);
            created.Outcome = RecoveryOutcome.New;
            return created;
        }

        var scan = Scan(log);
        if (scan.CorruptAt >= 0)
            return Reset(dir, replicaId, freshIncarnation, $"corrupt record at offset {scan.CorruptAt} of {LogFileName}");
        if (scan.Frames.Count == 0 || log[scan.Frames[0].Offset + HeaderBytes] != TypeIdentity)
            return Reset(dir, replicaId, freshIncarnation, "log without an identity record");
        var id = FrameBody(log, scan.Frames[0]);
        var idReader = new ByteReader(id);
        if (idReader.U32() != Magic)
            return Reset(dir, replicaId, freshIncarnation, "bad identity record");
        int storedId = idReader.I32();
        long incarnation = idReader.I64();
        if (storedId != replicaId)
            throw new InvalidDataException($"{LogFileName} belongs to replica {storedId}, not {replicaId}.");

        var result = new DurableLog(dir, replicaId, incarnation);
        try
        {
            foreach (var frame in scan.Frames.Skip(1))
                result.Replay(log[frame.Offset + HeaderBytes], FrameBody(log, frame));
            if (snap is not null)
            {
                var body = ReadSnapshotFile(snap);
                if (body is null)
                    return Reset(dir, replicaId, freshIncarnation, $"corrupt {SnapshotFileName}");
                var reader = new ByteReader(body);
                result._snapshot = Codec.ReadSnapshot(ref reader);
            }
        }
        catch (FormatException e)
        {
            return Reset(dir, replicaId, freshIncarnation, "unreadable record: " + e.Message);
        }
        if (result._snapshotMark > (result._snapshot?.Index ?? 0))
            return Reset(dir, replicaId, freshIncarnation, $"snapshot {result._snapshotMark} is missing");
        if (result._snapshot is { } s)
            foreach (long slot in result._records.Keys.Where(k => k <= s.Index).ToList())
                result._records.Remove(slot);
        if (scan.ValidEnd < log.Length)
        {
            dir.Truncate(LogFileName, scan.ValidEnd);
            result.TornBytesCut = log.Length - scan.ValidEnd;
        }
        result._log = dir.OpenAppend(LogFileName);
        result.Outcome = RecoveryOutcome.Recovered;
        return result;
    }

    private static DurableLog Reset(ILogDirectory dir, int replicaId, long incarnation, string reason)
    {
        dir.Delete(SnapshotFileName);
        dir.Delete(LogFileName);
        var log = Create(dir, replicaId, incarnation);
        log.Outcome = RecoveryOutcome.Reset;
        log.ResetReason = reason;
        return log;
    }

    private static DurableLog Create(ILogDirectory dir, int replicaId, long incarnation)
    {
        var log = new DurableLog(dir, replicaId, incarnation);
        log.Rewrite();
        return log;
    }

    private void Replay(byte type, ReadOnlySpan<byte> body)
    {
        var r = new ByteReader(body);
        switch (type)
        {
            case TypeHardState:
                _hard = new HardState(Codec.ReadBallot(ref r), r.I64());
                break;
            case TypeRecord:
                var rec = Codec.ReadRecord(ref r);
                _records[rec.Slot] = rec;
                break;
            case TypeSnapshotMark:
                _snapshotMark = Math.Max(_snapshotMark, r.I64());
                break;
            default:
                throw new FormatException($"Unknown record type {type}.");
        }
    }

    /// <summary>
    /// Writes what <paramref name="ready"/> asks to persist (snapshot, records, hard state, in that
    /// order). A snapshot is written and synced at once, with the log rewritten around it; the rest is
    /// durable only after <see cref="Sync"/>.
    /// </summary>
    public void Append(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        if (ready.HardState is { } h)
            _hard = h;
        foreach (var r in ready.Records)
            if (_snapshot is null || r.Slot > _snapshot.Index)
                _records[r.Slot] = r;
        if (ready.Snapshot is { } snap)
        {
            _snapshot = snap;
            _snapshotMark = snap.Index;
            foreach (long slot in _records.Keys.Where(k => k <= snap.Index).ToList())
                _records.Remove(slot);
            var w = new ByteWriter(snap.Data.Length + 256);
            w.U32(0);
            w.U32(0);
            Codec.Write(w, snap);
            w.PatchUInt32(0, (uint)(w.Length - HeaderBytes));
            w.PatchUInt32(4, Crc32C.Compute(w.Written[HeaderBytes..]));
            _dir.WriteAtomic(SnapshotFileName, w.Written);
            Rewrite();
            return;
        }
        _buffer.Clear();
        foreach (var r in ready.Records)
            Frame(_buffer, TypeRecord, w => Codec.Write(w, r));
        if (ready.HardState is { } hard)
            Frame(_buffer, TypeHardState, w => { Codec.Write(w, hard.Promised); w.I64(hard.Commit); });
        if (_buffer.Length > 0)
            _log.Append(_buffer.Written);
    }

    /// <summary>Makes everything appended durable (fsync).</summary>
    public void Sync() => _log.Sync();

    /// <summary>Appends <paramref name="ready"/> and syncs when it says it must.</summary>
    public void Persist(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        Append(ready);
        if (ready.MustSync)
            Sync();
    }

    private void Rewrite()
    {
        var w = new ByteWriter(1 << 12);
        Frame(w, TypeIdentity, x => { x.U32(Magic); x.I32(ReplicaId); x.I64(Incarnation); });
        if (_snapshotMark > 0)
            Frame(w, TypeSnapshotMark, x => x.I64(_snapshotMark));
        Frame(w, TypeHardState, x => { Codec.Write(x, _hard.Promised); x.I64(_hard.Commit); });
        foreach (var r in _records.Values.OrderBy(r => r.Slot))
            Frame(w, TypeRecord, x => Codec.Write(x, r));
        _log?.Dispose();
        _dir.WriteAtomic(LogFileName, w.Written);
        _log = _dir.OpenAppend(LogFileName);
    }

    private static void Frame(ByteWriter w, byte type, Action<ByteWriter> body)
    {
        int start = w.Length;
        w.U32(0);
        w.U32(0);
        w.U8(type);
        body(w);
        int length = w.Length - start - HeaderBytes;
        w.PatchUInt32(start, (uint)length);
        w.PatchUInt32(start + 4, Crc32C.Compute(w.Slice(start + HeaderBytes, length)));
    }

    private static byte[]? ReadSnapshotFile(byte[] file)
    {
        if (!IsValidFrame(file, 0) || HeaderBytes + BinaryPrimitives.ReadInt32LittleEndian(file) != file.Length)
            return null;
        return file[HeaderBytes..];
    }

    private static ReadOnlySpan<byte> FrameBody(byte[] data, (int Offset, int Length) frame) =>
        data.AsSpan(frame.Offset + HeaderBytes + 1, frame.Length - 1);

    /// <summary>Where the frames of a log file are, how far its valid prefix goes, and whether a bad frame
    /// has valid ones after it (corruption rather than a torn tail).</summary>
    internal readonly record struct ScanResult(List<(int Offset, int Length)> Frames, int ValidEnd, int CorruptAt);

    internal static ScanResult Scan(ReadOnlySpan<byte> data)
    {
        var frames = new List<(int, int)>();
        int pos = 0;
        while (pos < data.Length)
        {
            if (!IsValidFrame(data, pos))
            {
                for (int q = pos + 1; q + HeaderBytes < data.Length; q++)
                    if (IsValidFrame(data, q))
                        return new ScanResult(frames, pos, pos);
                return new ScanResult(frames, pos, -1);
            }
            int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(data[pos..]);
            frames.Add((pos, length));
            pos += HeaderBytes + length;
        }
        return new ScanResult(frames, pos, -1);
    }

    private static bool IsValidFrame(ReadOnlySpan<byte> data, int pos)
    {
        if (data.Length - pos < HeaderBytes + 1)
            return false;
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(data[pos..]);
        if (length == 0 || length > MaxFrameBytes || length > data.Length - pos - HeaderBytes)
            return false;
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(data[(pos + 4)..]);
        return Crc32C.Compute(data.Slice(pos + HeaderBytes, (int)length)) == crc;
    }

    /// <inheritdoc />
    public void Dispose() => _log?.Dispose();
}
