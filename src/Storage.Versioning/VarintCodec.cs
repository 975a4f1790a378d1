using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Storage.Versioning;

/// <summary>Appends unsigned LEB128 varints, fixed-width integers and strings to a growing buffer.</summary>
internal sealed class VarintWriter(int capacity = 4096)
{
    private readonly ArrayBufferWriter<byte> _buffer = new(capacity);

    public int Length => _buffer.WrittenCount;

    public ReadOnlySpan<byte> Written => _buffer.WrittenSpan;

    public void Clear() => _buffer.Clear();

    public void Byte(byte value)
    {
        _buffer.GetSpan(1)[0] = value;
        _buffer.Advance(1);
    }

    public void Unsigned(ulong value)
    {
        var span = _buffer.GetSpan(10);
        int n = 0;
        while (value >= 0x80)
        {
            span[n++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[n++] = (byte)value;
        _buffer.Advance(n);
    }

    public void Signed(long value) => Unsigned((ulong)((value << 1) ^ (value >> 63)));

    public void UInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.GetSpan(4), value);
        _buffer.Advance(4);
    }

    public void String(string value)
    {
        int count = Encoding.UTF8.GetByteCount(value);
        Unsigned((ulong)count);
        Encoding.UTF8.GetBytes(value, _buffer.GetSpan(count));
        _buffer.Advance(count);
    }

    public void Bytes(ReadOnlySpan<byte> value) => _buffer.Write(value);
}

/// <summary>Reads what <see cref="VarintWriter"/> wrote; throws <see cref="FormatException"/> on anything malformed.</summary>
internal ref struct VarintReader(ReadOnlySpan<byte> data)
{
    private readonly ReadOnlySpan<byte> _data = data;
    private int _position;

    public readonly bool AtEnd => _position >= _data.Length;

    public readonly int Position => _position;

    public byte Byte()
    {
        if (_position >= _data.Length)
            throw new FormatException("Record ends early.");
        return _data[_position++];
    }

    public ulong Unsigned()
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            byte b = Byte();
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
                return value;
        }
        throw new FormatException("Varint too long.");
    }

    public long Long()
    {
        ulong value = Unsigned();
        if (value > long.MaxValue)
            throw new FormatException("Value out of range.");
        return (long)value;
    }

    public long Signed()
    {
        ulong value = Unsigned();
        return (long)(value >> 1) ^ -(long)(value & 1);
    }

    public int Int(int max = int.MaxValue)
    {
        ulong value = Unsigned();
        if (value > (ulong)max)
            throw new FormatException($"Count {value} out of range.");
        return (int)value;
    }

    public uint UInt32()
    {
        if (_position > _data.Length - 4)
            throw new FormatException("Record ends early.");
        uint value = BinaryPrimitives.ReadUInt32LittleEndian(_data[_position..]);
        _position += 4;
        return value;
    }

    public string String()
    {
        int count = Int(4096);
        if (_position > _data.Length - count)
            throw new FormatException("Record ends early.");
        string value = Encoding.UTF8.GetString(_data.Slice(_position, count));
        _position += count;
        return value;
    }

    public ReadOnlySpan<byte> Bytes(int count)
    {
        if (count < 0 || _position > _data.Length - count)
            throw new FormatException("Record ends early.");
        var value = _data.Slice(_position, count);
        _position += count;
        return value;
    }
}
