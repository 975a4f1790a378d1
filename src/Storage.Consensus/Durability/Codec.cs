using System.Buffers.Binary;
using System.Text;

namespace Storage.Consensus;

/// <summary>A growable little-endian byte writer for the log and wire formats.</summary>
internal sealed class ByteWriter
{
    private byte[] _buffer;

    public ByteWriter(int capacity = 256) => _buffer = new byte[Math.Max(16, capacity)];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, Length);

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, Length);

    public void Clear() => Length = 0;

    public Span<byte> Reserve(int n)
    {
        if (Length + n > _buffer.Length)
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + n));
        var span = _buffer.AsSpan(Length, n);
        Length += n;
        return span;
    }

    /// <summary>Overwrites 4 bytes at <paramref name="offset"/> (length/checksum back-patching).</summary>
    public void PatchUInt32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(offset, 4), value);

    public Span<byte> Slice(int offset, int length) => _buffer.AsSpan(offset, length);

    public void U8(byte v) => Reserve(1)[0] = v;

    public void I32(int v) => BinaryPrimitives.WriteInt32LittleEndian(Reserve(4), v);

    public void U32(uint v) => BinaryPrimitives.WriteUInt32LittleEndian(Reserve(4), v);

    public void I64(long v) => BinaryPrimitives.WriteInt64LittleEndian(Reserve(8), v);

    public void Bytes(ReadOnlySpan<byte> v)
    {
        I32(v.Length);
        v.CopyTo(Reserve(v.Length));
    }

    public void Raw(ReadOnlySpan<byte> v) => v.CopyTo(Reserve(v.Length));

    public void String(string v) => Bytes(Encoding.UTF8.GetBytes(v));
}

/// <summary>A little-endian reader over a buffer; throws <see cref="FormatException"/> when it runs out.</summary>
internal ref struct ByteReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _pos;

    public readonly int Remaining => _data.Length - _pos;

    public readonly bool End => _pos == _data.Length;

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || n > _data.Length - _pos)
            throw new FormatException("Truncated record.");
        var s = _data.Slice(_pos, n);
        _pos += n;
        return s;
    }

    public byte U8() => Take(1)[0];

    public int I32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public byte[] Bytes() => Take(I32()).ToArray();

    public ReadOnlySpan<byte> Raw(int n) => Take(n);

    public string String() => Encoding.UTF8.GetString(Take(I32()));

    public int Count(int elementMinBytes)
    {
        int n = I32();
        if (n < 0 || (long)n * elementMinBytes > Remaining)
            throw new FormatException("Bad element count.");
        return n;
    }
}

/// <summary>Binary encodings of the consensus types, shared by the durable log and the TCP transport.</summary>
internal static class Codec
{
    public static void Write(ByteWriter w, Ballot b)
    {
        w.I64(b.Round);
        w.I32(b.ReplicaId);
    }

    public static Ballot ReadBallot(ref ByteReader r) => new(r.I64(), r.I32());

    public static void Write(ByteWriter w, Configuration c)
    {
        w.I32(c.Members.Count);
        foreach (var m in c.Members)
        {
            w.I32(m.Id);
            w.I64(m.Incarnation);
        }
    }

    public static Configuration ReadConfig(ref ByteReader r)
    {
        int n = r.Count(12);
        var members = new Member[n];
        for (int i = 0; i < n; i++)
            members[i] = new Member(r.I32(), r.I64());
        try
        {
            return new Configuration(members);
        }
        catch (ArgumentException e)
        {
            throw new FormatException("Bad configuration.", e);
        }
    }

    public static void Write(ByteWriter w, Value v)
    {
        w.U8((byte)v.Kind);
        switch (v.Kind)
        {
            case ValueKind.Commands:
                w.I32(v.Commands.Count);
                foreach (var c in v.Commands)
                    w.Bytes(c.Span);
                break;
            case ValueKind.Config:
                Write(w, v.Config!);
                break;
        }
    }

    public static Value ReadValue(ref ByteReader r)
    {
        var kind = (ValueKind)r.U8();
        switch (kind)
        {
            case ValueKind.NoOp:
                return Value.NoOp;
            case ValueKind.Commands:
                int n = r.Count(4);
                if (n == 0)
                    throw new FormatException("Empty command batch.");
                var commands = new ReadOnlyMemory<byte>[n];
                for (int i = 0; i < n; i++)
                    commands[i] = r.Bytes();
                return Value.FromCommands(commands);
            case ValueKind.Config:
                return Value.FromConfig(ReadConfig(ref r));
            default:
                throw new FormatException($"Unknown value kind {kind}.");
        }
    }

    public static void Write(ByteWriter w, LogRecord rec)
    {
        w.I64(rec.Slot);
        Write(w, rec.Ballot);
        Write(w, rec.Value);
    }

    public static LogRecord ReadRecord(ref ByteReader r) => new(r.I64(), ReadBallot(ref r), ReadValue(ref r));

    public static void Write(ByteWriter w, Snapshot s)
    {
        w.I64(s.Index);
        Write(w, s.Config);
        w.Bytes(s.Data.Span);
    }

    public static Snapshot ReadSnapshot(ref ByteReader r) => new(r.I64(), ReadConfig(ref r), r.Bytes());

    public static void Write(ByteWriter w, Message m)
    {
        w.U8((byte)m.Type);
        w.I32(m.From);
        w.I64(m.FromIncarnation);
        w.I32(m.To);
        Write(w, m.Ballot);
        w.I64(m.Slot);
        w.I64(m.Commit);
        w.I64(m.SnapshotIndex);
        w.I64(m.LeaseTick);
        w.I32(m.Entries.Count);
        foreach (var e in m.Entries)
            Write(w, e);
        w.I32(m.Slots.Count);
        foreach (long s in m.Slots)
            w.I64(s);
        w.U8(m.Snapshot is null ? (byte)0 : (byte)1);
        if (m.Snapshot is not null)
            Write(w, m.Snapshot);
    }

    public static Message ReadMessage(ref ByteReader r)
    {
        var type = (MessageType)r.U8();
        if (type is < MessageType.Prepare or > MessageType.Snapshot)
            throw new FormatException($"Unknown message type {type}.");
        int from = r.I32();
        long inc = r.I64();
        int to = r.I32();
        var ballot = ReadBallot(ref r);
        long slot = r.I64(), commit = r.I64(), snapIndex = r.I64(), lease = r.I64();
        int n = r.Count(21);
        var entries = new LogRecord[n];
        for (int i = 0; i < n; i++)
            entries[i] = ReadRecord(ref r);
        int k = r.Count(8);
        var slots = new long[k];
        for (int i = 0; i < k; i++)
            slots[i] = r.I64();
        Snapshot? snap = r.U8() == 1 ? ReadSnapshot(ref r) : null;
        return new Message
        {
            Type = type,
            From = from,
            FromIncarnation = inc,
            To = to,
            Ballot = ballot,
            Slot = slot,
            Commit = commit,
            SnapshotIndex = snapIndex,
            LeaseTick = lease,
            Entries = entries,
            Slots = slots,
            Snapshot = snap,
        };
    }
}
