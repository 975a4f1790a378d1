using Storage.Native;
using Storage.Raid.Tests;

namespace Storage.Versioning.Tests;

/// <summary>The three-stream CRC-32C agrees with the plain byte-by-byte definition at every length and start value.</summary>
public class Crc32CTests
{
    private static uint Reference(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
        }
        return crc;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(3071)]
    [InlineData(3072)]
    [InlineData(3073)]
    [InlineData(4096)]
    [InlineData(16384)]
    [InlineData(16384 + 13)]
    [InlineData(1 << 20)]
    public void Matches_the_definition(int length)
    {
        var data = Bytes.Random(length, length);
        Assert.Equal(~Reference(~0u, data), Crc32C.Compute(data));
        Assert.Equal(Reference(0x12345678, data), Crc32C.Append(0x12345678, data));
    }

    [Fact]
    public void Known_value() => Assert.Equal(0xE3069283u, Crc32C.Compute("123456789"u8));
}
