namespace Storage.Consensus;

/// <summary>
/// The few file operations the durable log needs, so the same log code runs on a real directory and on
/// the fault-injecting <see cref="MemoryLogDirectory"/> of the simulation.
/// </summary>
public interface ILogDirectory
{
    /// <summary>The whole content of <paramref name="name"/> as it would survive a crash now, or null when absent.</summary>
    byte[]? ReadAll(string name);

    /// <summary>Opens <paramref name="name"/> for appending (created when absent).</summary>
    ILogFile OpenAppend(string name);

    /// <summary>Replaces <paramref name="name"/> with <paramref name="data"/> atomically and durably
    /// (write a temporary file, fsync it, rename over, fsync the directory).</summary>
    void WriteAtomic(string name, ReadOnlySpan<byte> data);

    /// <summary>Cuts <paramref name="name"/> to <paramref name="length"/> bytes, durably.</summary>
    void Truncate(string name, long length);

    /// <summary>Deletes <paramref name="name"/> if present, durably.</summary>
    void Delete(string name);
}

/// <summary>An append handle of <see cref="ILogDirectory"/>.</summary>
public interface ILogFile : IDisposable
{
    /// <summary>Appends bytes; they may be lost in a crash until <see cref="Sync"/> returns.</summary>
    void Append(ReadOnlySpan<byte> data);

    /// <summary>Makes everything appended so far durable (fsync).</summary>
    void Sync();
}
