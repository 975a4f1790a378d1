namespace Storage.Raid;

/// <summary>
/// More members are unavailable than the level tolerates: the request cannot be served and no write was
/// acknowledged. Bring members back (assemble with them) or restore from backup.
/// </summary>
public sealed class ArrayFailedException : IOException
{
    /// <summary>Creates the exception.</summary>
    public ArrayFailedException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public ArrayFailedException() { }

    /// <summary>Creates the exception.</summary>
    public ArrayFailedException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// A range of the array is unreadable: a member returned read errors while others were missing, so those
/// blocks could not be rebuilt. Only this range fails; writing it again makes it readable.
/// </summary>
public sealed class BadBlockException : IOException
{
    /// <summary>Creates the exception for the array range that failed.</summary>
    public BadBlockException(long offset, long length, string message) : base(message)
    {
        Offset = offset;
        Length = length;
    }

    /// <summary>Creates the exception.</summary>
    public BadBlockException() { }

    /// <summary>Creates the exception.</summary>
    public BadBlockException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public BadBlockException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>First unreadable byte of the array.</summary>
    public long Offset { get; }

    /// <summary>Unreadable bytes.</summary>
    public long Length { get; }
}

/// <summary>
/// The disks given cannot be created as or assembled into an array (foreign or newer superblocks, members
/// of different arrays, too few members, too small). Nothing was written; the message says what to do.
/// </summary>
public sealed class ArrayConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ArrayConfigurationException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public ArrayConfigurationException() { }

    /// <summary>Creates the exception.</summary>
    public ArrayConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The separate journal device failed a write or flush: the array write that needed it did not happen.</summary>
public sealed class JournalDeviceException(string message, Exception inner) : IOException(message, inner);
