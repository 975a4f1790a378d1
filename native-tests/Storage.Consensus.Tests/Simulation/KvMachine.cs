using System.Buffers.Binary;

namespace Storage.Consensus.Tests.Simulation;

/// <summary>The operations of the simulation's key-value register model.</summary>
internal enum KvOp : byte
{
    Put = 1,
    Get = 2,
    Cas = 3,
}

/// <summary>A client command: (client, seq) identifies it for deduplication; retries reuse it unchanged.</summary>
internal readonly record struct KvCommand(int Client, long Seq, KvOp Op, int Key, long A, long B)
{
    public const int Size = 4 + 8 + 1 + 4 + 8 + 8;

    public byte[] Encode()
    {
        var b = new byte[Size];
        BinaryPrimitives.WriteInt32LittleEndian(b, Client);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(4), Seq);
        b[12] = (byte)Op;
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(13), Key);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(17), A);
        BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(25), B);
        return b;
    }

    public static KvCommand Decode(ReadOnlySpan<byte> b) => new(
        BinaryPrimitives.ReadInt32LittleEndian(b),
        BinaryPrimitives.ReadInt64LittleEndian(b[4..]),
        (KvOp)b[12],
        BinaryPrimitives.ReadInt32LittleEndian(b[13..]),
        BinaryPrimitives.ReadInt64LittleEndian(b[17..]),
        BinaryPrimitives.ReadInt64LittleEndian(b[25..]));
}

/// <summary>
/// The replicated state machine of the simulation: integer registers with put/get/compare-and-set, a
/// per-client deduplication table (so retried commands apply once), and an incremental state hash.
/// </summary>
internal sealed class KvMachine
{
    private readonly SortedDictionary<int, long> _values = [];
    private readonly SortedDictionary<int, (long Seq, long Result)> _sessions = [];

    public long Applied { get; set; }

    public ulong Hash { get; private set; }

    public long Get(int key) => _values.GetValueOrDefault(key);

    public bool TryCached(int client, long seq, out long result)
    {
        result = 0;
        if (_sessions.TryGetValue(client, out var s) && s.Seq == seq)
        {
            result = s.Result;
            return true;
        }
        return false;
    }

    public long LastSeq(int client) => _sessions.TryGetValue(client, out var s) ? s.Seq : 0;

    /// <summary>Applies a command once; a command at or below the client's last seq is ignored.</summary>
    public (bool Fresh, long Result) Apply(KvCommand c)
    {
        if (_sessions.TryGetValue(c.Client, out var s) && c.Seq <= s.Seq)
            return (false, c.Seq == s.Seq ? s.Result : 0);
        long current = _values.GetValueOrDefault(c.Key);
        long result = 0;
        switch (c.Op)
        {
            case KvOp.Put:
                SetValue(c.Key, current, c.A);
                break;
            case KvOp.Get:
                result = current;
                break;
            case KvOp.Cas:
                result = current == c.A ? 1 : 0;
                if (result == 1)
                    SetValue(c.Key, current, c.B);
                break;
        }
        if (_sessions.TryGetValue(c.Client, out var old))
            Hash ^= Mix(0x5E55, c.Client, old.Seq, old.Result);
        _sessions[c.Client] = (c.Seq, result);
        Hash ^= Mix(0x5E55, c.Client, c.Seq, result);
        return (true, result);
    }

    private void SetValue(int key, long old, long value)
    {
        if (_values.ContainsKey(key))
            Hash ^= Mix(0xCAFE, key, old, 0);
        _values[key] = value;
        Hash ^= Mix(0xCAFE, key, value, 0);
    }

    public byte[] Serialize()
    {
        var b = new byte[8 + _values.Count * 12 + _sessions.Count * 20];
        var span = b.AsSpan();
        BinaryPrimitives.WriteInt32LittleEndian(span, _values.Count);
        BinaryPrimitives.WriteInt32LittleEndian(span[4..], _sessions.Count);
        int p = 8;
        foreach (var (k, v) in _values)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[p..], k);
            BinaryPrimitives.WriteInt64LittleEndian(span[(p + 4)..], v);
            p += 12;
        }
        foreach (var (c, (seq, result)) in _sessions)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[p..], c);
            BinaryPrimitives.WriteInt64LittleEndian(span[(p + 4)..], seq);
            BinaryPrimitives.WriteInt64LittleEndian(span[(p + 12)..], result);
            p += 20;
        }
        return b;
    }

    public static KvMachine Restore(ReadOnlySpan<byte> b, long applied)
    {
        var m = new KvMachine { Applied = applied };
        int nv = BinaryPrimitives.ReadInt32LittleEndian(b), ns = BinaryPrimitives.ReadInt32LittleEndian(b[4..]);
        int p = 8;
        for (int i = 0; i < nv; i++, p += 12)
            m.SetValue(BinaryPrimitives.ReadInt32LittleEndian(b[p..]), 0, BinaryPrimitives.ReadInt64LittleEndian(b[(p + 4)..]));
        for (int i = 0; i < ns; i++, p += 20)
        {
            int c = BinaryPrimitives.ReadInt32LittleEndian(b[p..]);
            long seq = BinaryPrimitives.ReadInt64LittleEndian(b[(p + 4)..]), result = BinaryPrimitives.ReadInt64LittleEndian(b[(p + 12)..]);
            m._sessions[c] = (seq, result);
            m.Hash ^= Mix(0x5E55, c, seq, result);
        }
        return m;
    }

    private static ulong Mix(ulong tag, long a, long b, long c)
    {
        ulong z = tag * 0x9E3779B97F4A7C15UL ^ (ulong)a * 0xBF58476D1CE4E5B9UL ^ (ulong)b * 0x94D049BB133111EBUL ^ (ulong)c;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
