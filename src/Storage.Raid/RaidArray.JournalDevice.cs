using Storage.Devices;

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

    /// <summary>
    /// Where <paramref name="role"/>'s part of the record in <paramref name="slot"/> goes: slot <c>slot</c> of the
    /// member's own ring, or sub-slot <c>role</c> of slot <c>slot</c> on the journal device.
    /// </summary>
    private (IBlockDevice Device, long Offset) JournalPart(int slot, int role, Member member)
        => _journalDevice is { } journal
            ? (journal.Device, JournalOffset + ((long)slot * Geometry.MemberCount + role) * JournalSlotSize)
            : (member.Device, JournalOffset + slot * JournalSlotSize);

    /// <summary>
    /// With a journal device, parts are durable once that device alone is flushed (one flush at a time; a caller
    /// whose parts a finished flush covered returns without another).
    /// </summary>
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
