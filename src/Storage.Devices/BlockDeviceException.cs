namespace Storage.Devices;

/// <summary>A read, write, flush or trim that failed on a device; carries the device and byte range.</summary>
public class BlockDeviceException : IOException
{
    /// <summary>Creates the exception for a failed operation on <paramref name="device"/>.</summary>
    public BlockDeviceException(string device, long offset, long length, string message, Exception? innerException = null)
        : base($"{device}: {message} (offset {offset}, {length} bytes)", innerException)
    {
        Device = device;
        Offset = offset;
        Length = length;
    }

    /// <summary>
    /// Creates the exception for a failure of <paramref name="device"/> as a whole (opening it, or finding it in
    /// use) rather than of a byte range; <see cref="Offset"/> and <see cref="Length"/> are 0.
    /// </summary>
    public BlockDeviceException(string device, string message, Exception? innerException)
        : base($"{device}: {message}", innerException)
    {
        Device = device;
    }

    /// <summary>Creates the exception with a message only.</summary>
    public BlockDeviceException() { Device = ""; }

    /// <summary>Creates the exception with a message only.</summary>
    public BlockDeviceException(string message) : base(message) { Device = ""; }

    /// <summary>Creates the exception with a message and cause.</summary>
    public BlockDeviceException(string message, Exception innerException) : base(message, innerException) { Device = ""; }

    /// <summary>Name of the device that failed.</summary>
    public string Device { get; }

    /// <summary>First byte of the failed range.</summary>
    public long Offset { get; }

    /// <summary>Length of the failed range in bytes.</summary>
    public long Length { get; }
}
