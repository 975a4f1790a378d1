using System.Buffers.Binary;
using Storage.Native;

namespace Storage.Versioning;

/// <summary>
/// Transaction groups. Every change is applied in memory at once and its operation appended to the open group; a
/// commit closes the group, waits for the data it refers to, flushes, then makes the group durable with one log
/// record (or, when the log is half full, a checkpoint of the whole state and a new superblock). Blocks the group
/// freed are reused only after that, and after every read that might still be reading them.
/// </summary>
public sealed partial class Pool
{
    private const int RecordHeaderBytes = 32;
    private const int CheckpointHeaderBytes = 40;
    private const int LogAlignment = 4096;
    private const uint RecordMagic = 0x474f4c50; // "PLOG"
    private const uint CheckpointMagic = 0x424b4350; // "PCKB"
    private readonly VarintWriter _ops = new();
    private readonly List<Closed> _closed = [];
    private readonly List<Task> _segmentWrites = [];
    private readonly SemaphoreSlim _commitLock = new(1, 1);
    private readonly ReadGuard _guard = new();
    private List<long> _pendingFrees = [];

    /// <summary>Blocks freed by changes not yet committed: they come back with the commit (caller holds the gate).</summary>
    private long PendingFreeBlocksLocked => _pendingFrees.Count + _closed.Sum(c => c.Frees.Count);
    private Action<long>? _queueFree;
    private List<long> _checkpointBlocks;
    private long _openTxg;
    private long _committedTxg;
    private long _logHead;
    private long _logUsed;

    private sealed record Closed(long Txg, byte[] Payload, List<long> Frees);

    /// <summary>The last durable transaction group.</summary>
    public long CommittedTransaction => Interlocked.Read(ref _committedTxg);

    /// <summary>Makes every change made before this call durable (group commit: concurrent callers share one).</summary>
    public Task CommitAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        return CommitCoreAsync(forceCheckpoint: false, cancellationToken);
    }

    /// <summary>Appends an operation to the open group after applying it (caller holds the gate).</summary>
    private void LogLocked(in PoolOp op)
    {
        _state.Apply(op, _openTxg, _queueFree ??= block => _pendingFrees.Add(block));
        op.Encode(_ops);
    }

    /// <summary>Ends the open group when it holds anything (caller holds the gate).</summary>
    private void CloseLocked()
    {
        if (_ops.Length == 0)
            return;
        _closed.Add(new Closed(_openTxg, _ops.Written.ToArray(), _pendingFrees));
        _pendingFrees = [];
        _ops.Clear();
        _openTxg++;
    }

    private async Task CommitCoreAsync(bool forceCheckpoint, CancellationToken cancellationToken)
    {
        await _commitLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            Closed[] closed;
            Task[] writes;
            Checkpoint? checkpoint = null;
            lock (_gate)
            {
                if (_failure is { } failure)
                    throw new IOException($"Pool '{Name}' cannot commit after an earlier failure: {failure.Message}", failure);
                CloseLocked();
                if (_closed.Count == 0 && (!forceCheckpoint || _committedTxg == _super.CheckpointTxg))
                    return;
                closed = [.. _closed];
                _closed.Clear();
                long last = closed.Length > 0 ? closed[^1].Txg : _committedTxg;
                long recordBytes = closed.Sum(c => RecordSize(c.Payload.Length) + LogAlignment);
                if (forceCheckpoint || _logUsed + recordBytes > _super.LogLength / 2)
                {
                    try
                    {
                        checkpoint = WriteCheckpointLocked(last);
                    }
                    catch (PoolFullException) when (closed.Length > 0 && _logUsed + recordBytes <= _super.LogLength - LogAlignment)
                    {
                        // No room for a checkpoint yet: the log still holds the records; the frees they bring make room.
                    }
                    catch (PoolFullException)
                    {
                        _closed.InsertRange(0, closed);
                        throw;
                    }
                }
                if (_open is { } open)
                    StartSegmentWrite(open);
                writes = [.. _segmentWrites];
            }
            try
            {
                await Task.WhenAll(writes).ConfigureAwait(false);
                if (checkpoint is not null)
                {
                    foreach (var (block, bytes) in checkpoint.Loose)
                        await _device.WriteAsync(DataOffset + block * BlockSize, bytes, cancellationToken: CancellationToken.None).ConfigureAwait(false);
                }
                await _device.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                if (checkpoint is not null)
                    await WriteSuperblockAsync(checkpoint).ConfigureAwait(false);
                else
                    await WriteRecordsAsync(closed).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                lock (_gate)
                    _failure ??= e;
                throw;
            }
            Interlocked.Exchange(ref _committedTxg, checkpoint?.Txg ?? closed[^1].Txg);
            await _guard.DrainAsync().ConfigureAwait(false);
            lock (_gate)
            {
                foreach (var group in closed)
                {
                    foreach (long block in group.Frees)
                        Release(block);
                }
                if (checkpoint is not null)
                {
                    foreach (long block in _checkpointBlocks)
                        Release(block);
                    _checkpointBlocks = checkpoint.Blocks;
                }
            }
        }
        finally
        {
            _commitLock.Release();
        }
    }

    private static long RecordSize(int payload) => (RecordHeaderBytes + payload + LogAlignment - 1) / LogAlignment * LogAlignment;

    private async Task WriteRecordsAsync(Closed[] closed)
    {
        foreach (var group in closed)
        {
            long size = RecordSize(group.Payload.Length);
            if (_logHead + size > _super.LogLength)
            {
                _logUsed += _super.LogLength - _logHead;
                _logHead = 0;
            }
            var record = new byte[size];
            var s = record.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(s, RecordMagic);
            BinaryPrimitives.WriteUInt64LittleEndian(s[8..], _super.PoolId);
            BinaryPrimitives.WriteInt64LittleEndian(s[16..], group.Txg);
            BinaryPrimitives.WriteInt32LittleEndian(s[24..], group.Payload.Length);
            group.Payload.CopyTo(s[RecordHeaderBytes..]);
            BinaryPrimitives.WriteUInt32LittleEndian(s[4..], Crc32C.Compute(s[8..(RecordHeaderBytes + group.Payload.Length)]));
            await _device.WriteAsync(_super.LogOffset + _logHead, record, cancellationToken: CancellationToken.None).ConfigureAwait(false);
            _logHead += size;
            _logUsed += size;
        }
        await _device.FlushAsync(CancellationToken.None).ConfigureAwait(false);
    }

    private sealed record Checkpoint(long Txg, long First, List<long> Blocks, long Bytes, uint Crc, List<(long Block, byte[] Bytes)> Loose);

    /// <summary>Serialises the state as of <paramref name="txg"/> into newly allocated blocks (caller holds the gate).</summary>
    private Checkpoint WriteCheckpointLocked(long txg)
    {
        var w = new VarintWriter(1 << 16);
        StateCodec.Write(_state, w);
        var data = w.Written;
        int payload = BlockSize - CheckpointHeaderBytes;
        int count = Math.Max(1, (data.Length + payload - 1) / payload);
        var blocks = new List<long>(count);
        var places = new List<(Segment? Segment, int Slot, long Block)>(count);
        for (int i = 0; i < count; i++)
        {
            if (TakeBufferedSlot(reserve: true) is var (segment, slot))
            {
                places.Add((segment, slot, segment.Index * SegmentBlocks + slot));
            }
            else
            {
                long spare = TakeLooseBlock();
                if (spare < 0)
                {
                    foreach (var place in places)
                        Release(place.Block);
                    throw new PoolFullException($"Pool '{Name}' has no room for its checkpoint ({count} blocks).");
                }
                places.Add((null, 0, spare));
            }
            blocks.Add(places[^1].Block);
        }
        var loose = new List<(long, byte[])>();
        for (int i = 0; i < count; i++)
        {
            var (segment, slot, block) = places[i];
            byte[] bytes = segment is null ? new byte[BlockSize] : [];
            var target = segment is null ? bytes.AsSpan() : segment.Buffer.AsSpan(slot * BlockSize, BlockSize);
            target.Clear();
            var chunk = data.Slice(Math.Min(data.Length, i * payload), Math.Clamp(data.Length - i * payload, 0, payload));
            BinaryPrimitives.WriteUInt32LittleEndian(target, CheckpointMagic);
            BinaryPrimitives.WriteUInt64LittleEndian(target[8..], _super.PoolId);
            BinaryPrimitives.WriteInt64LittleEndian(target[16..], txg);
            BinaryPrimitives.WriteInt32LittleEndian(target[24..], i);
            BinaryPrimitives.WriteInt32LittleEndian(target[28..], chunk.Length);
            BinaryPrimitives.WriteInt64LittleEndian(target[32..], i + 1 < count ? places[i + 1].Block : -1);
            chunk.CopyTo(target[CheckpointHeaderBytes..]);
            BinaryPrimitives.WriteUInt32LittleEndian(target[4..], Crc32C.Compute(target[8..]));
            if (segment is null)
                loose.Add((block, bytes));
        }
        foreach (var segment in places.Select(p => p.Segment).Distinct())
        {
            if (segment is not null && segment.Filled == SegmentBlocks)
                StartSegmentWrite(segment);
        }
        return new Checkpoint(txg, blocks[0], blocks, data.Length, Crc32C.Compute(data), loose);
    }

    private async Task WriteSuperblockAsync(Checkpoint checkpoint)
    {
        var next = _super with
        {
            Sequence = _super.Sequence + 1,
            CheckpointTxg = checkpoint.Txg,
            CheckpointBlock = checkpoint.First,
            CheckpointBlocks = checkpoint.Blocks.Count,
            CheckpointBytes = checkpoint.Bytes,
            CheckpointCrc = checkpoint.Crc,
            LogStart = _logHead,
        };
        await _device.WriteAsync(next.Sequence % PoolSuperblock.Copies * PoolSuperblock.Size, next.Encode(), forceUnitAccess: true, CancellationToken.None).ConfigureAwait(false);
        await _device.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        _super = next;
        _logUsed = 0;
    }

    private static async Task<(PoolState State, List<long> Blocks)> ReadCheckpointAsync(Storage.Devices.IBlockDevice device, PoolSuperblock super, CancellationToken cancellationToken)
    {
        var state = new PoolState(super.BlockSize);
        var blocks = new List<long>();
        if (super.CheckpointBlock < 0)
            return (state, blocks);
        if (super.CheckpointBytes > int.MaxValue)
            throw new PoolConfigurationException($"Pool '{super.Name}': checkpoint of {super.CheckpointBytes} bytes is larger than this build reads.");
        var data = new byte[super.CheckpointBytes];
        var block = new byte[super.BlockSize];
        int payload = super.BlockSize - CheckpointHeaderBytes, filled = 0;
        long next = super.CheckpointBlock;
        for (int index = 0; index < super.CheckpointBlocks; index++)
        {
            if (next < 0 || next >= super.BlockCount)
                throw Damaged(super, $"checkpoint block {index} points outside the pool");
            await device.ReadAsync(super.DataOffset + next * super.BlockSize, block, cancellationToken).ConfigureAwait(false);
            var s = block.AsSpan();
            int length = BinaryPrimitives.ReadInt32LittleEndian(s[28..]);
            bool valid = BinaryPrimitives.ReadUInt32LittleEndian(s) == CheckpointMagic
                && BinaryPrimitives.ReadUInt32LittleEndian(s[4..]) == Crc32C.Compute(s[8..])
                && BinaryPrimitives.ReadUInt64LittleEndian(s[8..]) == super.PoolId
                && BinaryPrimitives.ReadInt64LittleEndian(s[16..]) == super.CheckpointTxg
                && BinaryPrimitives.ReadInt32LittleEndian(s[24..]) == index
                && length >= 0 && length <= payload && filled + length <= data.Length;
            if (!valid)
                throw Damaged(super, $"checkpoint block {index} (block {next}) fails its checks");
            s.Slice(CheckpointHeaderBytes, length).CopyTo(data.AsSpan(filled));
            filled += length;
            blocks.Add(next);
            next = BinaryPrimitives.ReadInt64LittleEndian(s[32..]);
        }
        if (filled != data.Length || Crc32C.Compute(data) != super.CheckpointCrc)
            throw Damaged(super, "the checkpoint's checksum does not match");
        try
        {
            return (StateCodec.Read(super.BlockSize, data), blocks);
        }
        catch (FormatException e)
        {
            throw Damaged(super, $"the checkpoint does not decode ({e.Message})");
        }
    }

    private static async Task<(long Txg, long Head, long Used)> ReplayAsync(Storage.Devices.IBlockDevice device, PoolSuperblock super, PoolState state, CancellationToken cancellationToken)
    {
        long txg = super.CheckpointTxg, position = super.LogStart, used = 0;
        while (true)
        {
            var payload = await TryReadRecordAsync(device, super, position, txg + 1, cancellationToken).ConfigureAwait(false);
            if (payload is null && position != 0)
            {
                payload = await TryReadRecordAsync(device, super, 0, txg + 1, cancellationToken).ConfigureAwait(false);
                if (payload is not null)
                {
                    used += super.LogLength - position;
                    position = 0;
                }
            }
            if (payload is null)
                return (txg, position, used);
            txg++;
            try
            {
                var reader = new VarintReader(payload);
                while (!reader.AtEnd)
                    state.Apply(PoolOp.Decode(ref reader), txg, freed: null);
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException or ArgumentException or KeyNotFoundException)
            {
                throw Damaged(super, $"log record {txg} does not apply ({e.Message})");
            }
            long size = RecordSize(payload.Length);
            position += size;
            used += size;
        }
    }

    private static async Task<byte[]?> TryReadRecordAsync(Storage.Devices.IBlockDevice device, PoolSuperblock super, long position, long txg, CancellationToken cancellationToken)
    {
        if (position + LogAlignment > super.LogLength)
            return null;
        var header = new byte[LogAlignment];
        await device.ReadAsync(super.LogOffset + position, header, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != RecordMagic
            || BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(8)) != super.PoolId
            || BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16)) != txg)
            return null;
        int length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(24));
        if (length < 0 || position + RecordSize(length) > super.LogLength)
            return null;
        var record = header;
        if (RecordSize(length) > LogAlignment)
        {
            record = new byte[RecordSize(length)];
            header.CopyTo(record, 0);
            await device.ReadAsync(super.LogOffset + position + LogAlignment, record.AsMemory(LogAlignment), cancellationToken).ConfigureAwait(false);
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(record.AsSpan(4)) != Crc32C.Compute(record.AsSpan(8, RecordHeaderBytes - 8 + length)))
            return null;
        return record.AsSpan(RecordHeaderBytes, length).ToArray();
    }

    private static PoolConfigurationException Damaged(PoolSuperblock super, string what)
        => new($"Pool '{super.Name}' is damaged: {what}. The device may be the wrong one or was overwritten.");
}
