using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Storage.Devices;
using Storage.Nbd.Protocol;

namespace Storage.Nbd.Connection;

/// <summary>
/// NBD_CMD_BLOCK_STATUS for <c>base:allocation</c>: one NBD_REPLY_TYPE_BLOCK_STATUS chunk (the context id, then
/// descriptors of u32 length and u32 flags) describing the request's range from its start, adjacent equal extents
/// merged, never past its end. A device without <see cref="IAllocationStatus"/> is one data extent. The reply may
/// cover less than asked (at most <see cref="MaxDescriptors"/> descriptors; one with NBD_CMD_FLAG_REQ_ONE), as the
/// spec allows; clients ask again for the rest.
/// </summary>
internal sealed partial class NbdConnection
{
    /// <summary>Descriptors in one reply.</summary>
    private const int MaxDescriptors = 512;

    /// <summary>Bytes of a block status payload at most: the context id and the descriptors.</summary>
    private const int BlockStatusPayloadMax = 4 + 8 * MaxDescriptors;

    private void StartBlockStatus(NbdRequest request)
    {
        try
        {
            request.Buffer = _server.Pool.Rent(BlockStatusPayloadMax);
            request.Await(BlockStatusAsync(request));
        }
        catch (Exception e)
        {
            request.Await(ValueTask.FromException(e));
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask BlockStatusAsync(NbdRequest request)
    {
        var device = _export!.Device;
        long offset = (long)request.Offset;
        long end = offset + request.Length;
        int limit = (request.Flags & NbdProtocol.CmdFlagReqOne) != 0 ? 1 : MaxDescriptors;
        int count = 0;
        long described = offset;
        if (device is IAllocationStatus status)
        {
            long sector = device.SectorSize;
            long alignedEnd = Math.Min((end + sector - 1) / sector * sector, device.Capacity);
            long position = offset / sector * sector;
            while (position < alignedEnd)
            {
                var extents = await status.GetAllocationAsync(position, alignedEnd - position).ConfigureAwait(false);
                if (extents.Count == 0)
                    throw new BlockDeviceException(device.Name, position, alignedEnd - position, "the device described no extents");
                bool full = false;
                foreach (var extent in extents)
                {
                    if (extent.Length <= 0)
                        throw new BlockDeviceException(device.Name, position, alignedEnd - position, $"the device described an extent of {extent.Length} bytes");
                    long start = Math.Max(position, offset);
                    long stop = Math.Min(position + extent.Length, end);
                    position += extent.Length;
                    if (stop <= start)
                        continue;
                    if (!AddDescriptor(request, ref count, limit, stop - start, (uint)extent.State & (NbdProtocol.StateHole | NbdProtocol.StateZero)))
                    {
                        full = true;
                        break;
                    }
                    described = stop;
                }
                // With REQ_ONE the first extent the device gave is the answer; a later call could only lengthen it.
                if (full || limit == 1 || described >= end)
                    break;
            }
        }
        if (count == 0)
            AddDescriptor(request, ref count, limit, end - offset, 0);
        BinaryPrimitives.WriteUInt32BigEndian(request.Buffer!.Data, _metaContextId);
        request.ReplyLength = 4 + 8 * count;
    }

    /// <summary>Appends a descriptor, or lengthens the last one when its flags are the same; false when full.</summary>
    private static bool AddDescriptor(NbdRequest request, ref int count, int limit, long length, uint flags)
    {
        var payload = request.Buffer!.Data;
        if (count > 0)
        {
            var last = payload.Slice(4 + 8 * (count - 1), 8);
            if (BinaryPrimitives.ReadUInt32BigEndian(last[4..]) == flags)
            {
                // The request's length is a u32, so the sum is one too.
                BinaryPrimitives.WriteUInt32BigEndian(last, (uint)(BinaryPrimitives.ReadUInt32BigEndian(last) + length));
                return true;
            }
        }
        if (count == limit)
            return false;
        var descriptor = payload.Slice(4 + 8 * count, 8);
        BinaryPrimitives.WriteUInt32BigEndian(descriptor, (uint)length);
        BinaryPrimitives.WriteUInt32BigEndian(descriptor[4..], flags);
        count++;
        return true;
    }
}
