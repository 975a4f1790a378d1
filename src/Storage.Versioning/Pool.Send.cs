using System.Buffers.Binary;
using Storage.Native;

namespace Storage.Versioning;

/// <summary>
/// Send and receive. A stream holds a header (the snapshot, its size and identity, and the base snapshot of an
/// incremental), then one record per block whose version lies in (base, snapshot] — its bytes and CRC-32C, or a run of
/// zeros — then a trailer with the record count and a CRC of everything before it. Receive stages every block in free
/// space and changes nothing visible until the trailer checks out; then the volume and snapshot appear in one commit.
/// </summary>
public sealed partial class Pool
{
    private const ulong StreamMagic = 0x444e45535250545f; // "_TPRSEND"
    private const uint StreamFormat = 1;
    private const byte DataRecord = 1;
    private const byte ZeroRecord = 2;
    private const byte EndRecord = 0xFF;

    private sealed record StreamHeader(int BlockSize, string Volume, string Snapshot, long Size, long Time, ulong SourcePool, long SourceVersion, string? Base, ulong BasePool, long BaseVersion);

    /// <summary>
    /// Writes <paramref name="volume"/>@<paramref name="snapshot"/> to <paramref name="output"/>: in full, or only what
    /// changed since <paramref name="fromSnapshot"/> (an older snapshot of the same volume).
    /// </summary>
    public async Task<TransferResult> SendAsync(string volume, string snapshot, string? fromSnapshot, Stream output, IProgress<PoolProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(output);
        ThrowIfUnusable();
        StreamHeader header;
        List<(long Block, bool Zero)> blocks;
        long volumeId, limit;
        lock (_gate)
        {
            var (owner, target) = FindSnapshot(volume, snapshot);
            SnapshotState? from = null;
            if (fromSnapshot is not null)
            {
                from = FindSnapshot(volume, fromSnapshot).Snapshot;
                if (from.Version >= target.Version)
                    throw new PoolConfigurationException($"'{volume}@{fromSnapshot}' is not older than '{volume}@{snapshot}'; an incremental goes from an older snapshot to a newer one.");
            }
            header = new StreamHeader(BlockSize, volume, snapshot, target.Size, target.Time, target.SourcePool, target.SourceVersion,
                from?.Name, from?.SourcePool ?? 0, from?.SourceVersion ?? 0);
            volumeId = owner.Id;
            limit = target.Version;
            blocks = from is null ? FullBlocks(owner, target) : ChangedBlocks(owner, target, from);
        }
        long sent = 0, zeros = 0, total = (long)blocks.Count * BlockSize;
        var w = new VarintWriter(BlockSize + 64);
        uint crc = ~0u;
        async Task FlushWriter()
        {
            crc = Crc32C.Append(crc, w.Written);
            await output.WriteAsync(w.Written.ToArray(), cancellationToken).ConfigureAwait(false);
            w.Clear();
        }
        WriteHeader(w, header);
        await FlushWriter().ConfigureAwait(false);
        var data = new byte[BlockSize];
        long done = 0;
        foreach (var (block, zero) in blocks)
        {
            if (zero)
            {
                w.Byte(ZeroRecord);
                w.Unsigned((ulong)block);
                zeros++;
            }
            else
            {
                await ReadBlockAsync(volumeId, limit, block, data, cancellationToken).ConfigureAwait(false);
                w.Byte(DataRecord);
                w.Unsigned((ulong)block);
                w.Bytes(data);
                w.UInt32(Crc32C.Compute(data));
                sent++;
            }
            await FlushWriter().ConfigureAwait(false);
            done += BlockSize;
            progress?.Report(new PoolProgress(done, total));
        }
        w.Byte(EndRecord);
        w.Unsigned((ulong)(sent + zeros));
        crc = Crc32C.Append(crc, w.Written);
        w.UInt32(~crc);
        await output.WriteAsync(w.Written.ToArray(), cancellationToken).ConfigureAwait(false);
        await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        return new TransferResult($"{volume}@{snapshot}", fromSnapshot is null ? null : $"{volume}@{fromSnapshot}", sent, zeros, sent * BlockSize);
    }

    /// <summary>Every block the snapshot sees with data, its origin's included (caller holds the gate).</summary>
    private List<(long, bool)> FullBlocks(VolumeState volume, SnapshotState snapshot)
    {
        var candidates = new SortedSet<long>();
        long limitBlocks = _state.BlocksOf(snapshot.Size);
        for (var v = volume; ; v = _state.Volume(v.Origin))
        {
            foreach (var (block, _) in v.Head.Range(0, limitBlocks))
                candidates.Add(block);
            if (v.Origin < 0)
                break;
            limitBlocks = Math.Min(limitBlocks, v.OriginBlocks);
        }
        return [.. candidates.Where(b => _state.Lookup(volume, b, snapshot.Version).IsMapped).Select(b => (b, false))];
    }

    /// <summary>Blocks whose entry at <paramref name="to"/> is newer than <paramref name="from"/> (caller holds the gate).</summary>
    private List<(long, bool)> ChangedBlocks(VolumeState volume, SnapshotState to, SnapshotState from)
    {
        var changed = new List<(long, bool)>();
        long blocks = _state.BlocksOf(to.Size);
        foreach (var (block, _) in volume.Head.Range(0, blocks))
        {
            var entry = OwnEntry(volume, block, to.Version);
            if (!entry.IsAbsent && entry.Version > from.Version)
                changed.Add((block, entry.IsTombstone));
        }
        return changed;
    }

    private static void WriteHeader(VarintWriter w, StreamHeader h)
    {
        var body = new VarintWriter();
        body.Unsigned((ulong)h.BlockSize);
        body.String(h.Volume);
        body.String(h.Snapshot);
        body.Unsigned((ulong)h.Size);
        body.Unsigned((ulong)h.Time);
        body.Unsigned(h.SourcePool);
        body.Unsigned((ulong)h.SourceVersion);
        body.Byte(h.Base is null ? (byte)0 : (byte)1);
        if (h.Base is not null)
        {
            body.String(h.Base);
            body.Unsigned(h.BasePool);
            body.Unsigned((ulong)h.BaseVersion);
        }
        var fixedPart = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(fixedPart, StreamMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedPart.AsSpan(8), StreamFormat);
        BinaryPrimitives.WriteInt32LittleEndian(fixedPart.AsSpan(12), body.Length);
        w.Bytes(fixedPart);
        w.Bytes(body.Written);
        w.UInt32(Crc32C.Compute(body.Written));
    }

    /// <summary>
    /// Applies a stream from <see cref="SendAsync"/>: a full stream creates <paramref name="volume"/> (default: the
    /// sender's name) with the snapshot; an incremental needs the volume to hold the stream's base snapshot, unchanged
    /// since. Nothing visible changes unless the whole stream checks out.
    /// </summary>
    /// <exception cref="SendStreamException">The stream is corrupted, truncated, or does not fit this pool or volume.</exception>
    public async Task<TransferResult> ReceiveAsync(Stream input, string? volume = null, IProgress<PoolProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ThrowIfUnusable();
        var reader = new StreamReader(input);
        var header = await ReadHeaderAsync(reader, cancellationToken).ConfigureAwait(false);
        string target = volume ?? header.Volume;
        if (header.BlockSize != BlockSize)
            throw new SendStreamException($"The stream has {header.BlockSize}-byte blocks; pool '{Name}' has {BlockSize}-byte blocks. Receive it into a pool with the same block size.");
        lock (_gate)
            CheckReceiveTarget(header, target);
        var staged = new List<(long Block, long Physical, uint Crc)>();
        var zeros = new List<long>();
        long received = 0;
        try
        {
            var data = new byte[BlockSize];
            long records = 0;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                byte kind = await reader.ByteAsync(cancellationToken).ConfigureAwait(false);
                if (kind == EndRecord)
                {
                    long count = (long)await reader.UnsignedAsync(cancellationToken).ConfigureAwait(false);
                    uint expected = ~reader.Crc;
                    var tail = await reader.BytesAsync(4, cancellationToken).ConfigureAwait(false);
                    if (count != records || BinaryPrimitives.ReadUInt32LittleEndian(tail) != expected)
                        throw new SendStreamException($"The stream's trailer does not match what came before it ({records} records read, {count} announced): the stream is corrupted.");
                    break;
                }
                long block = (long)await reader.UnsignedAsync(cancellationToken).ConfigureAwait(false);
                if (block >= _state.BlocksOf(header.Size))
                    throw new SendStreamException($"The stream names block {block}, beyond the snapshot's {header.Size} bytes: the stream is corrupted.");
                if (kind == ZeroRecord)
                {
                    zeros.Add(block);
                }
                else if (kind == DataRecord)
                {
                    await reader.FillAsync(data, cancellationToken).ConfigureAwait(false);
                    uint crc = BinaryPrimitives.ReadUInt32LittleEndian(await reader.BytesAsync(4, cancellationToken).ConfigureAwait(false));
                    if (Crc32C.Compute(data) != crc)
                        throw new SendStreamException($"Block {block} in the stream does not match its checksum: the stream is corrupted.");
                    long physical = await PlaceAsync(-1, block, data, crc, map: false, cancellationToken).ConfigureAwait(false);
                    staged.Add((block, physical, crc));
                    received++;
                }
                else
                {
                    throw new SendStreamException($"Unknown record kind {kind} in the stream: it is corrupted or from a newer storage.");
                }
                records++;
                progress?.Report(new PoolProgress(records * BlockSize, 0));
            }
            lock (_gate)
            {
                CheckReceiveTarget(header, target);
                long id;
                if (header.Base is null)
                {
                    id = _state.NextVolumeId;
                    LogLocked(new PoolOp { Kind = PoolOpKind.CreateVolume, Volume = id, Name = target, Count = header.Size, Origin = -1 });
                }
                else
                {
                    id = Find(target).Id;
                    if (_state.Volume(id).Size != header.Size)
                        LogLocked(new PoolOp { Kind = PoolOpKind.ResizeVolume, Volume = id, Count = header.Size });
                }
                foreach (var (block, physical, crc) in staged)
                    LogLocked(PoolOp.Map(id, block, physical, crc));
                foreach (long block in zeros)
                    LogLocked(PoolOp.Trim(id, block, 1));
                LogLocked(new PoolOp
                {
                    Kind = PoolOpKind.CreateSnapshot, Volume = id, Snapshot = _state.NextSnapshotId, Name = header.Snapshot,
                    Time = header.Time, SourcePool = header.SourcePool, SourceVersion = header.SourceVersion,
                });
                CloseLocked();
                staged.Clear();
            }
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException)
        {
            throw new SendStreamException($"The stream ends early or is malformed ({e.Message}): nothing was received.", e);
        }
        finally
        {
            if (staged.Count > 0)
            {
                lock (_gate)
                {
                    foreach (var (_, physical, _) in staged)
                        Release(physical);
                }
            }
        }
        await CommitCoreAsync(false, cancellationToken).ConfigureAwait(false);
        RaiseChanged();
        return new TransferResult($"{target}@{header.Snapshot}", header.Base is null ? null : $"{target}@{header.Base}", received, zeros.Count, received * BlockSize);
    }

    private void CheckReceiveTarget(StreamHeader header, string target)
    {
        Names.Check(target, "volume");
        var existing = _state.FindVolume(target);
        if (header.Base is null)
        {
            if (existing is not null)
                throw new SendStreamException($"Volume '{target}' already exists; a full stream creates a new volume. Name another one, or send an incremental from a snapshot it has.");
            return;
        }
        if (existing is null)
            throw new SendStreamException($"The stream is an incremental from '{header.Volume}@{header.Base}', but pool '{Name}' has no volume '{target}'. Receive the full stream first.");
        var baseSnapshot = existing.Snapshots.Find(s => s.SourcePool == header.BasePool && s.SourceVersion == header.BaseVersion);
        if (baseSnapshot is null)
            throw new SendStreamException($"Volume '{target}' does not hold the stream's base snapshot '{header.Base}' (as sent from pool {header.BasePool:x16}); receive that first.");
        if (existing.Snapshots[^1] != baseSnapshot)
            throw new SendStreamException($"Volume '{target}' has snapshots newer than the stream's base '{baseSnapshot.Name}'; roll back to '{target}@{baseSnapshot.Name}' first.");
        if (existing.Head.Entries().Any(e => e.Entry.Version > baseSnapshot.Version) || existing.Size != baseSnapshot.Size)
            throw new SendStreamException($"Volume '{target}' changed since '{target}@{baseSnapshot.Name}'; roll it back to that snapshot first ('storage snapshot rollback {target}@{baseSnapshot.Name}').");
        if (existing.FindSnapshot(header.Snapshot) is not null)
            throw new SendStreamException($"Volume '{target}' already has a snapshot '{header.Snapshot}'.");
    }

    private static async Task<StreamHeader> ReadHeaderAsync(StreamReader reader, CancellationToken cancellationToken)
    {
        try
        {
            var fixedPart = await reader.BytesAsync(16, cancellationToken).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt64LittleEndian(fixedPart) != StreamMagic)
                throw new SendStreamException("This is not a storage send stream (wrong magic).");
            uint format = BinaryPrimitives.ReadUInt32LittleEndian(fixedPart.AsSpan(8));
            if (format > StreamFormat)
                throw new SendStreamException($"The stream has format {format}; this build reads format {StreamFormat}. Use a newer storage to receive it.");
            int length = BinaryPrimitives.ReadInt32LittleEndian(fixedPart.AsSpan(12));
            if (length is < 0 or > 1 << 16)
                throw new SendStreamException("The stream's header is corrupted.");
            var body = await reader.BytesAsync(length, cancellationToken).ConfigureAwait(false);
            var crc = await reader.BytesAsync(4, cancellationToken).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt32LittleEndian(crc) != Crc32C.Compute(body))
                throw new SendStreamException("The stream's header does not match its checksum: the stream is corrupted.");
            var r = new VarintReader(body);
            int blockSize = r.Int(PoolCreateOptions.MaxBlockSize);
            string volume = r.String(), snapshot = r.String();
            long size = r.Long(), time = r.Long();
            ulong pool = r.Unsigned();
            long version = r.Long();
            bool incremental = r.Byte() != 0;
            return incremental
                ? new StreamHeader(blockSize, volume, snapshot, size, time, pool, version, r.String(), r.Unsigned(), r.Long())
                : new StreamHeader(blockSize, volume, snapshot, size, time, pool, version, null, 0, 0);
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException)
        {
            throw new SendStreamException($"The stream's header is truncated or malformed ({e.Message}).", e);
        }
    }

    /// <summary>Reads a send stream, keeping the running CRC of every byte read.</summary>
    private sealed class StreamReader(Stream input)
    {
        private readonly byte[] _one = new byte[1];

        public uint Crc { get; private set; } = ~0u;

        public async ValueTask<byte> ByteAsync(CancellationToken cancellationToken)
        {
            await FillAsync(_one, cancellationToken).ConfigureAwait(false);
            return _one[0];
        }

        public async ValueTask<ulong> UnsignedAsync(CancellationToken cancellationToken)
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                byte b = await ByteAsync(cancellationToken).ConfigureAwait(false);
                value |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                    return value;
            }
            throw new FormatException("Varint too long.");
        }

        public async ValueTask<byte[]> BytesAsync(int count, CancellationToken cancellationToken)
        {
            var bytes = new byte[count];
            await FillAsync(bytes, cancellationToken).ConfigureAwait(false);
            return bytes;
        }

        public async ValueTask FillAsync(byte[] buffer, CancellationToken cancellationToken)
        {
            await input.ReadExactlyAsync(buffer, cancellationToken).ConfigureAwait(false);
            Crc = Crc32C.Append(Crc, buffer);
        }
    }
}
