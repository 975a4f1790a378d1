namespace Storage.Versioning;

/// <summary>Serialises the whole <see cref="PoolState"/> for a checkpoint: varints, blocks delta-coded in order.</summary>
internal static class StateCodec
{
    private const uint Magic = 0x54504b43; // "CKPT"

    public static void Write(PoolState state, VarintWriter w)
    {
        w.UInt32(Magic);
        w.Unsigned((ulong)state.NextVolumeId);
        w.Unsigned((ulong)state.NextSnapshotId);
        w.Unsigned((ulong)state.Volumes.Count);
        foreach (var volume in state.Volumes.Values)
        {
            w.Unsigned((ulong)volume.Id);
            w.String(volume.Name);
            w.Unsigned((ulong)volume.Size);
            w.Unsigned((ulong)volume.Created);
            w.Signed(volume.Origin);
            w.Unsigned((ulong)volume.OriginVersion);
            w.Unsigned((ulong)volume.OriginBlocks);
            w.Unsigned((ulong)volume.Snapshots.Count);
            foreach (var s in volume.Snapshots)
            {
                w.Unsigned((ulong)s.Id);
                w.String(s.Name);
                w.Unsigned((ulong)s.Version);
                w.Unsigned((ulong)s.Size);
                w.Unsigned((ulong)s.Time);
                w.Unsigned(s.SourcePool);
                w.Unsigned((ulong)s.SourceVersion);
            }
            w.Unsigned((ulong)volume.Head.Count);
            long previous = -1;
            foreach (var (block, entry) in volume.Head.Entries())
            {
                w.Unsigned((ulong)(block - previous));
                WriteEntry(w, entry);
                previous = block;
            }
            w.Unsigned((ulong)volume.History.Count);
            previous = -1;
            foreach (long block in volume.History.Keys.Order())
            {
                var older = volume.History[block];
                w.Unsigned((ulong)(block - previous));
                w.Unsigned((ulong)older.Count);
                foreach (var entry in older)
                    WriteEntry(w, entry);
                previous = block;
            }
        }
    }

    public static PoolState Read(int blockSize, ReadOnlySpan<byte> data)
    {
        var r = new VarintReader(data);
        if (r.UInt32() != Magic)
            throw new FormatException("Not a pool checkpoint.");
        var state = new PoolState(blockSize) { NextVolumeId = r.Long(), NextSnapshotId = r.Long() };
        int volumes = r.Int(1 << 24);
        for (int v = 0; v < volumes; v++)
        {
            var volume = new VolumeState
            {
                Id = r.Long(), Name = r.String(), Size = r.Long(), Created = r.Long(),
                Origin = r.Signed(), OriginVersion = r.Long(), OriginBlocks = r.Long(),
            };
            int snapshots = r.Int(1 << 24);
            for (int i = 0; i < snapshots; i++)
            {
                volume.Snapshots.Add(new SnapshotState
                {
                    Id = r.Long(), Name = r.String(), Version = r.Long(), Size = r.Long(), Time = r.Long(),
                    SourcePool = r.Unsigned(), SourceVersion = r.Long(),
                });
            }
            long heads = r.Long(), block = -1;
            for (long i = 0; i < heads; i++)
            {
                block += r.Long();
                volume.Head[block] = ReadEntry(ref r);
            }
            long histories = r.Long();
            block = -1;
            for (long i = 0; i < histories; i++)
            {
                block += r.Long();
                int count = r.Int(1 << 24);
                var older = new List<BlockEntry>(count);
                for (int j = 0; j < count; j++)
                    older.Add(ReadEntry(ref r));
                volume.History.Add(block, older);
            }
            state.Volumes.Add(volume.Id, volume);
        }
        if (!r.AtEnd)
            throw new FormatException("Checkpoint has trailing bytes.");
        return state;
    }

    private static void WriteEntry(VarintWriter w, BlockEntry entry)
    {
        w.Unsigned((ulong)(entry.Physical + 1));
        w.Unsigned((ulong)entry.Version);
        if (entry.IsMapped)
            w.UInt32(entry.Crc);
    }

    private static BlockEntry ReadEntry(ref VarintReader r)
    {
        long physical = r.Long() - 1;
        long version = r.Long();
        return physical < 0 ? BlockEntry.Tombstone(version) : BlockEntry.Mapped(physical, version, r.UInt32());
    }
}
