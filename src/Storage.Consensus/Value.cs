using System.Collections.ObjectModel;

namespace Storage.Consensus;

/// <summary>What a slot's value is.</summary>
public enum ValueKind : byte
{
    /// <summary>Fills a slot that a new leader found empty; applies nothing.</summary>
    NoOp = 0,

    /// <summary>A batch of application commands, applied in order.</summary>
    Commands = 1,

    /// <summary>A new configuration, governing the slots after this one.</summary>
    Config = 2,
}

/// <summary>The immutable value of one log slot: a no-op, a batch of commands, or a configuration.</summary>
public sealed class Value : IEquatable<Value>
{
    private static readonly ReadOnlyCollection<ReadOnlyMemory<byte>> NoCommands = new([]);

    private Value(ValueKind kind, IReadOnlyList<ReadOnlyMemory<byte>> commands, Configuration? config)
    {
        Kind = kind;
        Commands = commands;
        Config = config;
    }

    /// <summary>The no-op value.</summary>
    public static Value NoOp { get; } = new(ValueKind.NoOp, NoCommands, null);

    /// <summary>A batch of application commands. The buffers are not copied and must not change.</summary>
    /// <exception cref="ArgumentException">The batch is empty.</exception>
    public static Value FromCommands(IReadOnlyList<ReadOnlyMemory<byte>> commands)
    {
        ArgumentNullException.ThrowIfNull(commands);
        if (commands.Count == 0)
            throw new ArgumentException("A command batch needs at least one command.", nameof(commands));
        return new Value(ValueKind.Commands, commands, null);
    }

    /// <summary>A configuration change to <paramref name="config"/>.</summary>
    public static Value FromConfig(Configuration config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return new Value(ValueKind.Config, NoCommands, config);
    }

    /// <summary>The kind of value.</summary>
    public ValueKind Kind { get; }

    /// <summary>The commands of a <see cref="ValueKind.Commands"/> value; empty otherwise.</summary>
    public IReadOnlyList<ReadOnlyMemory<byte>> Commands { get; }

    /// <summary>The configuration of a <see cref="ValueKind.Config"/> value; null otherwise.</summary>
    public Configuration? Config { get; }

    /// <summary>Total bytes of the commands (0 for other kinds).</summary>
    public int PayloadBytes
    {
        get
        {
            int n = 0;
            foreach (var c in Commands)
                n += c.Length;
            return n;
        }
    }

    /// <inheritdoc />
    public bool Equals(Value? other)
    {
        if (ReferenceEquals(this, other))
            return true;
        if (other is null || other.Kind != Kind || other.Commands.Count != Commands.Count)
            return false;
        if (Kind == ValueKind.Config)
            return Config!.Equals(other.Config);
        for (int i = 0; i < Commands.Count; i++)
            if (!Commands[i].Span.SequenceEqual(other.Commands[i].Span))
                return false;
        return true;
    }

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as Value);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        hash.Add(Kind);
        hash.Add(Config);
        foreach (var c in Commands)
            hash.AddBytes(c.Span);
        return hash.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        ValueKind.NoOp => "noop",
        ValueKind.Config => "config" + Config,
        _ => $"cmds[{Commands.Count}]",
    };
}
