namespace Storage.Parity;

/// <summary>A kernel set was requested that does not exist or cannot run on this machine.</summary>
public sealed class ParityConfigurationException : Exception
{
    /// <summary>Creates the exception with a message that says what to choose instead.</summary>
    public ParityConfigurationException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public ParityConfigurationException() { }

    /// <summary>Creates the exception with an inner exception.</summary>
    public ParityConfigurationException(string message, Exception innerException) : base(message, innerException) { }
}
