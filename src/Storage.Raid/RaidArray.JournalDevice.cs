using System.Buffers;
using System.Runtime.CompilerServices;
using Storage.Devices;
using Storage.Native;

namespace Storage.Raid;

// Where journal parts live: in every member (the default), or all on one separate device (md's --write-journal).
public sealed partial class RaidArray
{
    private readonly Member? _journalDevice;
    private readonly SemaphoreSlim _journalFlushGate = new(1, 1);

    /// <summary>The separate journal device, or null when the journal (if any) is in the members.</summary>
    public IBlockDevice? JournalDevice => _journalDevice?.Device;

    /// <summary>
    /// Bytes a separate journal device needs for an array of <paramref name="members"/> members with
    /// <paramref name="chunkSize"/> chunks: its label area, then per slot one part (header and chunk) for every role.
    /// </summary>
    public static long JournalDeviceSize(int members, int chunkSize, int journalSlots = ArrayCreateOptions.DefaultJournalDeviceSlots)
        => LabelAreaSize + (long)journalSlots * members * (JournalRecord.HeaderSize + (long)chunkSize);

    /// <summary>Where slot <paramref name="slot"/> starts on the journal device: room for a part (header and chunk) of every role.</summary>
    private long DeviceSlotOffset(int slot) => JournalOffset + (long)slot * Geometry.MemberCount * JournalSlotSize;

    /// <summary>
    /// Writes a record's parts to the journal device as one write into its slot, packed: header, data, header, data, …
    /// in target order (each header names its role and length, so the next part starts right after). One write instead
    /// of two per part: on a file the writes to one file serialise in the kernel.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteRecordToDeviceAsync(IBlockDevice journal, JournalTicket ticket, long stripe, int inChunk, StripeRequest request, ulong roles, CancellationToken cancellationToken)
    {
        var segment = request.Segment;
        var targets = request.Targets;
        int width = segment.Width, partBytes = JournalRecord.HeaderSize + width;
        byte[] record = ArrayPool<byte>.Shared.Rent(targets.Count * partBytes);
        try
        {
            for (int i = 0; i < targets.Count; i++)
            {
                var (row, _) = targets[i];
                var data = segment.Row(row).Span;
                var part = record.AsSpan(i * partBytes, partBytes);
                JournalRecord.Write(part, Id, ticket.Sequence, stripe, inChunk, width, _layout.MemberOf(stripe, row), roles, Crc32C.Compute(data), request.Holders);
                data.CopyTo(part[JournalRecord.HeaderSize..]);
            }
            var write = journal.WriteAsync(DeviceSlotOffset(ticket.Slot), record.AsMemory(0, targets.Count * partBytes), cancellationToken: cancellationToken);
            _journal.Issued(ticket);
            try
            {
                await write.ConfigureAwait(false);
            }
            catch (BlockDeviceException e)
            {
                throw JournalDeviceFailed(e);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(record);
        }
    }

    /// <summary>
    /// Assembly: the parts in every slot of the journal device, read header by header from the slot's start until a
    /// header that is not this array's or not of the slot's first record (a shorter record leaves an older one's tail).
    /// </summary>
    private async Task<List<(int Role, JournalRecord Record, long SlotOffset)>> ReadDevicePartsAsync(IBlockDevice journal, CancellationToken cancellationToken)
    {
        var parts = new List<(int, JournalRecord, long)>();
        byte[] header = new byte[JournalRecord.HeaderSize];
        long slotBytes = (long)Geometry.MemberCount * JournalSlotSize;
        for (int slot = 0; slot < JournalSlots; slot++)
        {
            long position = DeviceSlotOffset(slot), end = position + slotBytes;
            long sequence = -1;
            for (int part = 0; part < Geometry.MemberCount && position + JournalRecord.HeaderSize <= end; part++)
            {
                try
                {
                    await journal.ReadAsync(position, header, cancellationToken).ConfigureAwait(false);
                }
                catch (BlockDeviceException)
                {
                    break;
                }
                if (!JournalRecord.TryParse(header, Id, Geometry.MemberCount, out var record) || record!.Sequence % JournalSlots != slot
                    || (sequence >= 0 && record.Sequence != sequence) || record.Role < 0 || record.Role >= Geometry.MemberCount
                    || record.Length <= 0 || record.Length > Geometry.ChunkSize)
                    break;
                sequence = record.Sequence;
                parts.Add((record.Role, record, position));
                position += JournalRecord.HeaderSize + record.Length;
            }
        }
        return parts;
    }

    /// <summary>
    /// With a journal device, parts are durable once that device alone is flushed (one flush at a time; a caller
    /// whose parts a finished flush covered returns without another).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FlushJournalDeviceAsync(IBlockDevice journal, long needed, CancellationToken cancellationToken)
    {
        await _journalFlushGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_journal.PartsDurable(needed))
                return;
            long number = _journal.StartPartFlush();
            await journal.FlushAsync(cancellationToken).ConfigureAwait(false);
            _journal.PartFlushDone(number);
        }
        finally
        {
            _journalFlushGate.Release();
        }
    }

    private JournalDeviceException JournalDeviceFailed(Exception e)
        => new($"The journal device {_journalDevice!.Device.Name} of array '{Name}' failed ({e.Message}); the write was not made. Stop the array, replace the journal device and assemble again.", e);
}
