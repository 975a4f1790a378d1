using System.Text;
using Storage.Devices;

namespace Storage.Nbd;

/// <summary>
/// A device offered to NBD clients under a name. The server never disposes the device; the owner keeps it alive
/// until the export is removed or the server stopped.
/// </summary>
public sealed class NbdExport
{
    /// <summary>Describes an export.</summary>
    /// <param name="name">What clients ask for (<c>nbd://host/NAME</c>): UTF-8, at most 4096 bytes, no NUL. The empty
    /// name is allowed and is what clients that name no export get.</param>
    /// <param name="device">The device served; its <see cref="IBlockDevice.SectorSize"/> is the minimum block size
    /// advertised to clients.</param>
    /// <param name="readOnly">Refuse writes, trims and zeroing with EPERM and tell clients the export is read-only.</param>
    /// <param name="description">Shown by clients that list exports (<c>nbdinfo --list</c>); at most 4096 UTF-8 bytes.</param>
    /// <exception cref="ArgumentException">The name or description is too long or contains NUL.</exception>
    public NbdExport(string name, IBlockDevice device, bool readOnly = false, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(device);
        CheckString(name, nameof(name));
        if (description is not null)
            CheckString(description, nameof(description));
        Name = name;
        Device = device;
        ReadOnly = readOnly;
        Description = description;
        NameUtf8 = Encoding.UTF8.GetBytes(name);
        DescriptionUtf8 = description is null ? null : Encoding.UTF8.GetBytes(description);
    }

    /// <summary>The name clients ask for.</summary>
    public string Name { get; }

    /// <summary>The device served.</summary>
    public IBlockDevice Device { get; }

    /// <summary>True when writes, trims and zeroing are refused.</summary>
    public bool ReadOnly { get; }

    /// <summary>Human-readable description, or null.</summary>
    public string? Description { get; }

    /// <summary>
    /// The I/O size clients should prefer (NBD_INFO_BLOCK_SIZE "preferred"), e.g. an array's full stripe; null takes
    /// <see cref="NbdServerOptions.PreferredBlockSize"/>. A power of two, at least the sector size; the server caps it
    /// at the maximum payload.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a power of two, or below the device's sector size.</exception>
    public int? PreferredBlockSize
    {
        get;
        init
        {
            if (value is { } size && (size < Device.SectorSize || !int.IsPow2(size)))
                throw new ArgumentOutOfRangeException(nameof(value), size, $"The preferred block size must be a power of two of at least {Device.SectorSize} bytes.");
            field = value;
        }
    }

    internal byte[] NameUtf8 { get; }

    internal byte[]? DescriptionUtf8 { get; }

    /// <summary>Serialises read-modify-write of partial sectors, so that two unaligned writes into one sector both land.</summary>
    internal SemaphoreSlim PartialSectorLock { get; } = new(1, 1);

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Device.Name}{(ReadOnly ? ", read-only" : "")})";

    private static void CheckString(string value, string parameter)
    {
        if (value.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("NBD names and descriptions cannot contain NUL.", parameter);
        if (Encoding.UTF8.GetByteCount(value) > Protocol.NbdProtocol.MaxStringLength)
            throw new ArgumentException($"NBD names and descriptions are at most {Protocol.NbdProtocol.MaxStringLength} UTF-8 bytes.", parameter);
    }
}
