using System.Runtime.CompilerServices;
using Storage.Devices;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>
/// Commands on the device. Sector-aligned reads and writes go straight to the device (the hot path, no state machine of
/// ours); on a device that can copy without waiting (<see cref="INoWaitBlockDevice"/>: a file served as it is) the
/// receive thread does what it can in place, whatever the size, and only the rest goes the asynchronous way. Requests
/// that are not sector-aligned are served, not refused: reads through a bounce sector, writes by read-modify-write of
/// the partial sectors under the export's <see cref="NbdExport.PartialSectorLock"/>, so that two unaligned writes
/// sharing a sector both land.
/// </summary>
internal sealed partial class NbdConnection
{
    private void StartRead(NbdRequest request)
    {
        var device = _export!.Device;
        try
        {
            long offset = (long)request.Offset;
            var data = request.Buffer!.DataMemory((int)request.Length);
            if (!IsAligned(device, request.Offset, request.Length))
            {
                request.Await(ReadUnalignedAsync(device, offset, data));
                return;
            }
            int done = 0;
            if (_noWaitDevice is { } noWait)
            {
                BeforeCopy(request.Length);
                done = WholeSectors(noWait.ReadWithoutWaiting(offset, data.Span));
            }
            request.Await(done == data.Length ? ValueTask.CompletedTask : device.ReadAsync(offset + done, data[done..]));
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    private void StartWrite(NbdRequest request)
    {
        var device = _export!.Device;
        bool fua = (request.Flags & NbdProtocol.CmdFlagFua) != 0;
        try
        {
            long offset = (long)request.Offset;
            var data = request.Buffer!.DataMemory((int)request.Length);
            if (!IsAligned(device, request.Offset, request.Length))
            {
                request.Await(WriteBytesAsync(_export, offset, request.Length, data, fua));
                return;
            }
            int done = 0;
            if (_noWaitDevice is { } noWait && !fua)
            {
                BeforeCopy(request.Length);
                done = WholeSectors(noWait.WriteWithoutWaiting(offset, data.Span));
            }
            request.Await(done == data.Length ? ValueTask.CompletedTask : device.WriteAsync(offset + done, data[done..], fua));
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    /// <summary>
    /// Before this thread copies a large payload in place, replies that are ready leave: they should not wait for
    /// the copy. Small copies take less than a send, so replies keep gathering.
    /// </summary>
    private void BeforeCopy(uint length)
    {
        if (length >= SeparatePayloadMin)
            Uncork();
    }

    /// <summary>Rounds bytes done down to whole sectors: the device's asynchronous calls take the rest from there.</summary>
    private int WholeSectors(int bytes) => bytes - bytes % _export!.Device.SectorSize;

    private void StartFlush(NbdRequest request)
    {
        try
        {
            request.Await(_export!.Device.FlushAsync());
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    private void StartTrim(NbdRequest request)
    {
        try
        {
            request.Await(TrimAsync(_export!.Device, (long)request.Offset, request.Length, (request.Flags & NbdProtocol.CmdFlagFua) != 0));
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    private void StartWriteZeroes(NbdRequest request)
    {
        // NO_HOLE needs nothing: zeros are always written, never punched.
        try
        {
            request.Await(WriteBytesAsync(_export!, (long)request.Offset, request.Length, ReadOnlyMemory<byte>.Empty,
                (request.Flags & NbdProtocol.CmdFlagFua) != 0));
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    private static bool IsAligned(IBlockDevice device, ulong offset, uint length) => ((offset | length) & (uint)(device.SectorSize - 1)) == 0;

    /// <summary>Trims the whole sectors inside the range; partial sectors are left alone (a trim is only a hint).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private static async ValueTask TrimAsync(IBlockDevice device, long offset, long length, bool fua)
    {
        long sector = device.SectorSize;
        long start = (offset + sector - 1) / sector * sector;
        long end = (offset + length) / sector * sector;
        if (end > start)
            await device.TrimAsync(start, end - start).ConfigureAwait(false);
        if (fua)
            await device.FlushAsync().ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadUnalignedAsync(IBlockDevice device, long offset, Memory<byte> destination)
    {
        int sector = device.SectorSize;
        var bounce = _server.Pool.Rent(sector);
        try
        {
            int done = 0;
            while (done < destination.Length)
            {
                long position = offset + done;
                int within = (int)(position % sector);
                int remaining = destination.Length - done;
                if (within == 0 && remaining >= sector)
                {
                    // Whole sectors straight into the destination.
                    int whole = remaining / sector * sector;
                    await device.ReadAsync(position, destination.Slice(done, whole)).ConfigureAwait(false);
                    done += whole;
                    continue;
                }
                await device.ReadAsync(position - within, bounce.DataMemory(sector)).ConfigureAwait(false);
                int count = Math.Min(sector - within, remaining);
                bounce.Data.Slice(within, count).CopyTo(destination.Span[done..]);
                done += count;
            }
        }
        finally
        {
            _server.Pool.Return(bounce);
        }
    }

    /// <summary>
    /// Writes <paramref name="source"/> (zeros when empty) over <paramref name="length"/> bytes at
    /// <paramref name="offset"/>, merging partial sectors with what the device holds; flushes afterwards when
    /// <paramref name="fua"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteBytesAsync(NbdExport export, long offset, long length, ReadOnlyMemory<byte> source, bool fua)
    {
        var device = export.Device;
        int sector = device.SectorSize;
        bool zeros = source.IsEmpty;
        bool partial = (offset | length) % sector != 0;
        if (partial)
            await export.PartialSectorLock.WaitAsync().ConfigureAwait(false);
        NativeBufferLease bounce = default;
        try
        {
            long done = 0;
            while (done < length)
            {
                long position = offset + done;
                int within = (int)(position % sector);
                long remaining = length - done;
                if (within == 0 && remaining >= sector)
                {
                    long whole = remaining / sector * sector;
                    if (zeros)
                    {
                        var zero = NbdServer.ZeroBuffer;
                        int chunk = (int)Math.Min(whole, zero.Length);
                        await device.WriteAsync(position, zero[..chunk]).ConfigureAwait(false);
                        done += chunk;
                    }
                    else
                    {
                        await device.WriteAsync(position, source.Slice((int)done, (int)whole)).ConfigureAwait(false);
                        done += whole;
                    }
                    continue;
                }
                // A partial sector: read it, patch it, write it back.
                if (bounce.Buffer is null)
                    bounce = new NativeBufferLease(_server.Pool, sector);
                var sectorData = bounce.Buffer!.DataMemory(sector);
                await device.ReadAsync(position - within, sectorData).ConfigureAwait(false);
                int count = (int)Math.Min(sector - within, remaining);
                if (zeros)
                    sectorData.Span.Slice(within, count).Clear();
                else
                    source.Span.Slice((int)done, count).CopyTo(sectorData.Span[within..]);
                await device.WriteAsync(position - within, sectorData).ConfigureAwait(false);
                done += count;
            }
            // Forced unit access on the last piece would not cover the earlier ones.
            if (fua)
                await device.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            bounce.Dispose();
            if (partial)
                export.PartialSectorLock.Release();
        }
    }

    /// <summary>A pooled buffer returned on dispose; default is "none".</summary>
    private readonly struct NativeBufferLease(Buffers.NativeBufferPool pool, int length) : IDisposable
    {
        public Buffers.NativeBuffer? Buffer { get; } = pool.Rent(length);

        public void Dispose()
        {
            if (Buffer is not null)
                pool.Return(Buffer);
        }
    }
}
