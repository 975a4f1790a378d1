namespace Storage.Versioning;

/// <summary>What a logged change does to the pool's state.</summary>
internal enum PoolOpKind : byte
{
    Map = 1,
    Trim = 2,
    CreateVolume = 3,
    ResizeVolume = 4,
    DeleteVolume = 5,
    CreateSnapshot = 6,
    DeleteSnapshot = 7,
    Rollback = 8,
    RenameVolume = 9,
    Relocate = 10,
    RenameSnapshot = 11,
}

/// <summary>
/// One logical change to the pool's state, as the intent log records it and as <see cref="PoolState.Apply"/> performs
/// it — live and at replay alike. The version of whatever it creates is the transaction group it is committed in.
/// </summary>
internal readonly record struct PoolOp
{
    public PoolOpKind Kind { get; init; }

    public long Volume { get; init; }

    /// <summary>Map/Trim: the first logical block.</summary>
    public long Block { get; init; }

    /// <summary>Trim: blocks; CreateVolume/Resize: bytes.</summary>
    public long Count { get; init; }

    /// <summary>Map: the physical block.</summary>
    public long Physical { get; init; }

    /// <summary>Map: CRC-32C of the block's bytes.</summary>
    public uint Crc { get; init; }

    /// <summary>Snapshot ops and clones: the snapshot id.</summary>
    public long Snapshot { get; init; }

    /// <summary>CreateVolume: the origin volume of a clone, or -1.</summary>
    public long Origin { get; init; }

    public string? Name { get; init; }

    /// <summary>CreateSnapshot: Unix seconds.</summary>
    public long Time { get; init; }

    /// <summary>CreateSnapshot: the pool and version the snapshot was first taken in (itself, or the sender's for a received one).</summary>
    public ulong SourcePool { get; init; }

    public long SourceVersion { get; init; }

    public static PoolOp Map(long volume, long block, long physical, uint crc) => new() { Kind = PoolOpKind.Map, Volume = volume, Block = block, Physical = physical, Crc = crc };

    /// <summary>The cleaner moved <paramref name="block"/>'s entry that pointed at <paramref name="from"/> to <paramref name="to"/> (same bytes, version, CRC).</summary>
    public static PoolOp Relocate(long volume, long block, long from, long to) => new() { Kind = PoolOpKind.Relocate, Volume = volume, Block = block, Count = from, Physical = to };

    public static PoolOp Trim(long volume, long block, long count) => new() { Kind = PoolOpKind.Trim, Volume = volume, Block = block, Count = count };

    public void Encode(VarintWriter w)
    {
        w.Byte((byte)Kind);
        w.Unsigned((ulong)Volume);
        switch (Kind)
        {
            case PoolOpKind.Map:
                w.Unsigned((ulong)Block);
                w.Unsigned((ulong)Physical);
                w.UInt32(Crc);
                break;
            case PoolOpKind.Trim:
                w.Unsigned((ulong)Block);
                w.Unsigned((ulong)Count);
                break;
            case PoolOpKind.Relocate:
                w.Unsigned((ulong)Block);
                w.Unsigned((ulong)Count);
                w.Unsigned((ulong)Physical);
                break;
            case PoolOpKind.CreateVolume:
                w.String(Name!);
                w.Unsigned((ulong)Count);
                w.Signed(Origin);
                w.Unsigned((ulong)Snapshot);
                break;
            case PoolOpKind.ResizeVolume:
                w.Unsigned((ulong)Count);
                break;
            case PoolOpKind.RenameVolume:
                w.String(Name!);
                break;
            case PoolOpKind.CreateSnapshot:
                w.Unsigned((ulong)Snapshot);
                w.String(Name!);
                w.Unsigned((ulong)Time);
                w.Unsigned(SourcePool);
                w.Unsigned((ulong)SourceVersion);
                break;
            case PoolOpKind.DeleteSnapshot or PoolOpKind.Rollback:
                w.Unsigned((ulong)Snapshot);
                break;
            case PoolOpKind.RenameSnapshot:
                w.Unsigned((ulong)Snapshot);
                w.String(Name!);
                break;
        }
    }

    public static PoolOp Decode(ref VarintReader r)
    {
        var kind = (PoolOpKind)r.Byte();
        long volume = r.Long();
        return kind switch
        {
            PoolOpKind.Map => Map(volume, r.Long(), r.Long(), r.UInt32()),
            PoolOpKind.Trim => Trim(volume, r.Long(), r.Long()),
            PoolOpKind.Relocate => Relocate(volume, r.Long(), r.Long(), r.Long()),
            PoolOpKind.CreateVolume => new() { Kind = kind, Volume = volume, Name = r.String(), Count = r.Long(), Origin = r.Signed(), Snapshot = r.Long() },
            PoolOpKind.ResizeVolume => new() { Kind = kind, Volume = volume, Count = r.Long() },
            PoolOpKind.RenameVolume => new() { Kind = kind, Volume = volume, Name = r.String() },
            PoolOpKind.DeleteVolume => new() { Kind = kind, Volume = volume },
            PoolOpKind.CreateSnapshot => new() { Kind = kind, Volume = volume, Snapshot = r.Long(), Name = r.String(), Time = r.Long(), SourcePool = r.Unsigned(), SourceVersion = r.Long() },
            PoolOpKind.DeleteSnapshot or PoolOpKind.Rollback => new() { Kind = kind, Volume = volume, Snapshot = r.Long() },
            PoolOpKind.RenameSnapshot => new() { Kind = kind, Volume = volume, Snapshot = r.Long(), Name = r.String() },
            _ => throw new FormatException($"Unknown pool operation {(byte)kind}."),
        };
    }
}
