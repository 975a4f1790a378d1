using Storage.Consensus;

namespace Storage.Metadata;

/// <summary>
/// A command with what makes retries idempotent: the client session, the request's sequence number, and
/// the highest seq below which the client has every response (so the replicas may forget those results).
/// </summary>
internal readonly record struct Envelope(long Session, long Seq, MetadataCommand Command, long AckedThrough = 0);

/// <summary>Issues sequence numbers for one client session and tracks which are still unanswered.</summary>
internal sealed class SessionTracker
{
    private readonly Lock _lock = new();
    private readonly SortedSet<long> _outstanding = [];
    private long _last;

    public long Session { get; } = Random.Shared.NextInt64(1, long.MaxValue);

    /// <summary>A new seq, and the seq through which every earlier request has been answered.</summary>
    public (long Seq, long AckedThrough) Next()
    {
        lock (_lock)
        {
            long seq = ++_last;
            _outstanding.Add(seq);
            return (seq, _outstanding.Min - 1);
        }
    }

    public void Done(long seq)
    {
        lock (_lock)
            _outstanding.Remove(seq);
    }
}

/// <summary>
/// Binary encodings of commands, results and records (stable: they live in logs and snapshots). Public so that a
/// client that reads a key (over TCP too) can decode the record stored there.
/// </summary>
public static class MetadataCodec
{
    private enum Op : byte
    {
        Put = 1,
        Delete = 2,
        Read = 3,
        CreatePool = 10,
        AddArrayMember = 11,
        RemoveArrayMember = 12,
        DeletePool = 13,
        CreateVolume = 20,
        ResizeVolume = 21,
        DeleteVolume = 22,
        MapExtent = 23,
        UnmapExtent = 24,
        CreateSnapshot = 30,
        DeleteSnapshot = 31,
        BeginTransaction = 40,
        DecideTransaction = 41,
        ForgetTransaction = 42,
    }

    internal static byte[] Encode(Envelope e)
    {
        var w = new ByteWriter(128);
        w.I64(e.Session);
        w.I64(e.Seq);
        w.I64(e.AckedThrough);
        WriteCommand(w, e.Command);
        return w.Written.ToArray();
    }

    /// <summary>One command on its own (as a transaction carries the changes it commits).</summary>
    public static byte[] EncodeCommand(MetadataCommand command)
    {
        ArgumentNullException.ThrowIfNull(command);
        var w = new ByteWriter(64);
        WriteCommand(w, command);
        return w.Written.ToArray();
    }

    /// <summary>Reads what <see cref="EncodeCommand"/> wrote.</summary>
    /// <exception cref="FormatException">Not an encoded command.</exception>
    public static MetadataCommand DecodeCommand(ReadOnlySpan<byte> data)
    {
        var r = new ByteReader(data);
        return ReadCommand(ref r);
    }

    private static void WriteCommand(ByteWriter w, MetadataCommand command)
    {
        switch (command)
        {
            case PutCommand c: w.U8((byte)Op.Put); w.String(c.Key); w.Bytes(c.Value.Span); w.I64(c.ExpectedVersion); break;
            case DeleteCommand c: w.U8((byte)Op.Delete); w.String(c.Key); w.I64(c.ExpectedVersion); break;
            case ReadCommand c: w.U8((byte)Op.Read); w.String(c.Key); break;
            case CreatePoolCommand c: w.U8((byte)Op.CreatePool); w.String(c.Name); WriteArrays(w, c.Arrays); break;
            case AddArrayMemberCommand c: w.U8((byte)Op.AddArrayMember); w.String(c.Pool); w.I32(c.ArrayId); w.String(c.Device); break;
            case RemoveArrayMemberCommand c: w.U8((byte)Op.RemoveArrayMember); w.String(c.Pool); w.I32(c.ArrayId); w.String(c.Device); break;
            case DeletePoolCommand c: w.U8((byte)Op.DeletePool); w.String(c.Name); break;
            case CreateVolumeCommand c: w.U8((byte)Op.CreateVolume); w.String(c.Name); w.String(c.Pool); w.I64(c.SizeBytes); break;
            case ResizeVolumeCommand c: w.U8((byte)Op.ResizeVolume); w.String(c.Name); w.I64(c.SizeBytes); break;
            case DeleteVolumeCommand c: w.U8((byte)Op.DeleteVolume); w.String(c.Name); break;
            case MapExtentCommand c: w.U8((byte)Op.MapExtent); w.String(c.Volume); WriteExtent(w, c.Extent); break;
            case UnmapExtentCommand c: w.U8((byte)Op.UnmapExtent); w.String(c.Volume); w.I64(c.Offset); break;
            case CreateSnapshotCommand c: w.U8((byte)Op.CreateSnapshot); w.String(c.Volume); w.String(c.Name); break;
            case DeleteSnapshotCommand c: w.U8((byte)Op.DeleteSnapshot); w.String(c.Volume); w.String(c.Name); break;
            case BeginTransactionCommand c: w.U8((byte)Op.BeginTransaction); w.String(c.Id); WriteStrings(w, c.Participants); WriteChanges(w, c.Changes); break;
            case DecideTransactionCommand c: w.U8((byte)Op.DecideTransaction); w.String(c.Id); w.U8(c.Commit ? (byte)1 : (byte)0); break;
            case ForgetTransactionCommand c: w.U8((byte)Op.ForgetTransaction); w.String(c.Id); break;
            default: throw new ArgumentException($"Unknown command {command.GetType().Name}.", nameof(command));
        }
    }

    internal static Envelope Decode(ReadOnlySpan<byte> data)
    {
        var r = new ByteReader(data);
        long session = r.I64(), seq = r.I64(), acked = r.I64();
        return new Envelope(session, seq, ReadCommand(ref r), acked);
    }

    private static MetadataCommand ReadCommand(ref ByteReader r)
        => (Op)r.U8() switch
        {
            Op.Put => new PutCommand(r.String(), r.Bytes(), r.I64()),
            Op.Delete => new DeleteCommand(r.String(), r.I64()),
            Op.Read => new ReadCommand(r.String()),
            Op.CreatePool => new CreatePoolCommand(r.String(), ReadArrays(ref r)),
            Op.AddArrayMember => new AddArrayMemberCommand(r.String(), r.I32(), r.String()),
            Op.RemoveArrayMember => new RemoveArrayMemberCommand(r.String(), r.I32(), r.String()),
            Op.DeletePool => new DeletePoolCommand(r.String()),
            Op.CreateVolume => new CreateVolumeCommand(r.String(), r.String(), r.I64()),
            Op.ResizeVolume => new ResizeVolumeCommand(r.String(), r.I64()),
            Op.DeleteVolume => new DeleteVolumeCommand(r.String()),
            Op.MapExtent => new MapExtentCommand(r.String(), ReadExtent(ref r)),
            Op.UnmapExtent => new UnmapExtentCommand(r.String(), r.I64()),
            Op.CreateSnapshot => new CreateSnapshotCommand(r.String(), r.String()),
            Op.DeleteSnapshot => new DeleteSnapshotCommand(r.String(), r.String()),
            Op.BeginTransaction => new BeginTransactionCommand(r.String(), ReadStrings(ref r)) { Changes = ReadChanges(ref r) },
            Op.DecideTransaction => new DecideTransactionCommand(r.String(), r.U8() == 1),
            Op.ForgetTransaction => new ForgetTransactionCommand(r.String()),
            var op => throw new FormatException($"Unknown metadata op {op}."),
        };

    /// <summary>A transaction's changes: a count and the commands (records written before changes existed end earlier: none).</summary>
    private static void WriteChanges(ByteWriter w, IReadOnlyList<MetadataCommand> changes)
    {
        w.I32(changes.Count);
        foreach (var change in changes)
            WriteCommand(w, change);
    }

    private static MetadataCommand[] ReadChanges(ref ByteReader r)
    {
        if (r.End)
            return [];
        var changes = new MetadataCommand[r.Count(2)];
        for (int i = 0; i < changes.Length; i++)
            changes[i] = ReadCommand(ref r);
        return changes;
    }

    internal static void Write(ByteWriter w, CommandResult result)
    {
        w.U8((byte)result.Code);
        w.String(result.Message ?? "");
        w.I64(result.Version);
        w.I64(result.Revision);
        w.Bytes(result.Value.Span);
    }

    internal static CommandResult ReadResult(ref ByteReader r)
    {
        var code = (ResultCode)r.U8();
        string message = r.String();
        return new CommandResult(code, message.Length == 0 ? null : message, r.I64(), r.I64(), r.Bytes());
    }

    private static void WriteStrings(ByteWriter w, IReadOnlyList<string> items)
    {
        w.I32(items.Count);
        foreach (string s in items)
            w.String(s);
    }

    private static string[] ReadStrings(ref ByteReader r)
    {
        var items = new string[r.Count(4)];
        for (int i = 0; i < items.Length; i++)
            items[i] = r.String();
        return items;
    }

    private static void WriteArrays(ByteWriter w, IReadOnlyList<ArrayRecord> arrays)
    {
        w.I32(arrays.Count);
        foreach (var a in arrays)
        {
            w.I32(a.Id);
            w.String(a.Level);
            WriteStrings(w, a.Members);
        }
    }

    private static ArrayRecord[] ReadArrays(ref ByteReader r)
    {
        var arrays = new ArrayRecord[r.Count(12)];
        for (int i = 0; i < arrays.Length; i++)
            arrays[i] = new ArrayRecord(r.I32(), r.String(), ReadStrings(ref r));
        return arrays;
    }

    private static void WriteExtent(ByteWriter w, ExtentRecord e)
    {
        w.I64(e.Offset);
        w.I64(e.Length);
        w.I32(e.ArrayId);
        w.I64(e.Physical);
    }

    private static ExtentRecord ReadExtent(ref ByteReader r) => new(r.I64(), r.I64(), r.I32(), r.I64());

    private static void WriteExtents(ByteWriter w, IReadOnlyList<ExtentRecord> extents)
    {
        w.I32(extents.Count);
        foreach (var e in extents)
            WriteExtent(w, e);
    }

    private static ExtentRecord[] ReadExtents(ref ByteReader r)
    {
        var extents = new ExtentRecord[r.Count(28)];
        for (int i = 0; i < extents.Length; i++)
            extents[i] = ReadExtent(ref r);
        return extents;
    }

    // Typed records are stored as values under their keys, so versions, compare-and-set and watches work for them too.

    /// <summary>The stored form of a pool record.</summary>
    public static byte[] EncodePool(PoolRecord p) => Build(w => { w.String(p.Name); WriteArrays(w, p.Arrays); });

    /// <summary>Reads what <see cref="EncodePool"/> wrote.</summary>
    /// <exception cref="FormatException">Not an encoded record.</exception>
    public static PoolRecord DecodePool(ReadOnlySpan<byte> b)
    {
        var r = new ByteReader(b);
        return new PoolRecord(r.String(), ReadArrays(ref r));
    }

    /// <summary>The stored form of a volume record.</summary>
    public static byte[] EncodeVolume(VolumeRecord v) => Build(w => { w.String(v.Name); w.String(v.Pool); w.I64(v.SizeBytes); WriteExtents(w, v.Extents); });

    /// <summary>Reads what <see cref="EncodeVolume"/> wrote.</summary>
    /// <exception cref="FormatException">Not an encoded record.</exception>
    public static VolumeRecord DecodeVolume(ReadOnlySpan<byte> b)
    {
        var r = new ByteReader(b);
        return new VolumeRecord(r.String(), r.String(), r.I64(), ReadExtents(ref r));
    }

    /// <summary>The stored form of a snapshot record.</summary>
    public static byte[] EncodeSnapshot(SnapshotRecord s) => Build(w => { w.String(s.Volume); w.String(s.Name); w.I64(s.SizeBytes); WriteExtents(w, s.Extents); w.I64(s.Revision); });

    /// <summary>Reads what <see cref="EncodeSnapshot"/> wrote.</summary>
    /// <exception cref="FormatException">Not an encoded record.</exception>
    public static SnapshotRecord DecodeSnapshot(ReadOnlySpan<byte> b)
    {
        var r = new ByteReader(b);
        return new SnapshotRecord(r.String(), r.String(), r.I64(), ReadExtents(ref r), r.I64());
    }

    /// <summary>The stored form of a transaction record.</summary>
    public static byte[] EncodeTransaction(TransactionRecord t) => Build(w => { w.String(t.Id); WriteStrings(w, t.Participants); w.U8((byte)t.State); WriteChanges(w, t.Changes); });

    /// <summary>Reads what <see cref="EncodeTransaction"/> wrote.</summary>
    /// <exception cref="FormatException">Not an encoded transaction record.</exception>
    public static TransactionRecord DecodeTransaction(ReadOnlySpan<byte> b)
    {
        var r = new ByteReader(b);
        return new TransactionRecord(r.String(), ReadStrings(ref r), (TransactionState)r.U8()) { Changes = ReadChanges(ref r) };
    }

    private static byte[] Build(Action<ByteWriter> write)
    {
        var w = new ByteWriter(128);
        write(w);
        return w.Written.ToArray();
    }
}
