namespace Storage.Nbd;

/// <summary>
/// The server refused a configuration: a listener on a non-loopback address without TLS and an allow-list, a Unix
/// socket path that is in use or is not a socket, a duplicate export name.
/// </summary>
public class NbdConfigurationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public NbdConfigurationException() { }

    /// <summary>Creates the exception with a message saying what to change.</summary>
    public NbdConfigurationException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and cause.</summary>
    public NbdConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}
