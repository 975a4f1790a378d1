using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Storage.Devices.Interop;

namespace Storage.Devices;

/// <summary>
/// A device on an open Linux file descriptor: the I/O code shared by <see cref="FileBlockDevice"/> and
/// <see cref="RawBlockDevice"/>. Reads and writes are <see cref="RandomAccess"/> calls (pread/pwrite, run on
/// the thread pool); <see cref="IBlockDevice.FlushAsync"/> is fdatasync; a force-unit-access write is the
/// write followed by fdatasync; trim punches a hole (fallocate) and writes zeros where that is unsupported,
/// so trimmed ranges read as zeros. Blocking calls (fdatasync, fallocate) run on the thread pool.
/// </summary>
/// <remarks>
/// With O_DIRECT (<see cref="IsDirectIo"/>) the kernel needs memory aligned to <see cref="DirectIoAlignment"/>
/// bytes. Native memory that is already aligned is passed through; any other buffer (every managed array) is
/// copied through pooled aligned buffers of 256 KiB, one at a time per call. Once warm, no path allocates per
/// call. Calls may run concurrently, as <see cref="IBlockDevice"/> allows.
/// </remarks>
public abstract class HandleBlockDevice : BlockDevice
{
    /// <summary>Memory alignment passed through to O_DIRECT without a copy.</summary>
    public const int DirectIoAlignment = AlignedBuffer.Alignment;

    private readonly SafeFileHandle _handle;
    private int _punchHoleUnsupported;

    private protected HandleBlockDevice(string name, SafeFileHandle handle, long capacity, int sectorSize, bool directIo, bool readOnly)
        : base(name, capacity, sectorSize)
    {
        _handle = handle;
        IsDirectIo = directIo;
        IsReadOnly = readOnly;
    }

    /// <summary>True when the descriptor has O_DIRECT: I/O bypasses the page cache.</summary>
    public bool IsDirectIo { get; }

    /// <summary>True when opened read-only: writes and trims throw <see cref="NotSupportedException"/>.</summary>
    public bool IsReadOnly { get; }

    /// <summary>The descriptor, for tests that inspect it.</summary>
    internal SafeFileHandle Handle => _handle;

    /// <inheritdoc />
    protected override ValueTask ReadCoreAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        IsDirectIo ? ReadDirectIoAsync(offset, buffer, cancellationToken) : ReadExactlyAsync(offset, buffer, cancellationToken);

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The device is read-only.</exception>
    protected override ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        return IsDirectIo
            ? WriteDirectIoAsync(offset, buffer, forceUnitAccess, cancellationToken)
            : WriteExactlyAsync(offset, buffer, forceUnitAccess, cancellationToken);
    }

    /// <inheritdoc />
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask FlushCoreAsync(CancellationToken cancellationToken)
    {
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        cancellationToken.ThrowIfCancellationRequested();
        SyncData(0, Capacity);
    }

    /// <inheritdoc />
    /// <exception cref="NotSupportedException">The device is read-only.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    protected override async ValueTask TrimCoreAsync(long offset, long length, CancellationToken cancellationToken)
    {
        ThrowIfReadOnly();
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        cancellationToken.ThrowIfCancellationRequested();
        if (TryPunchHole(offset, length))
            return;
        var zeros = AlignedBufferPool.Shared.Rent();
        try
        {
            zeros.GetSpan().Clear();
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(zeros.Length, length - done);
                await RandomAccess.WriteAsync(_handle, zeros.Memory[..n], offset + done, cancellationToken).ConfigureAwait(false);
                done += n;
            }
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, length, $"trim (writing zeros) failed: {e.Message}", e);
        }
        finally
        {
            AlignedBufferPool.Shared.Return(zeros);
        }
    }

    /// <summary>Takes the zero-writing trim path, as on a file system without hole punching (for tests).</summary>
    internal void DisablePunchHole() => Volatile.Write(ref _punchHoleUnsupported, 1);

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            _handle.Dispose();
        base.Dispose(disposing);
    }

    private bool TryPunchHole(long offset, long length)
    {
        // fallocate's off_t is 32-bit in 32-bit processes; those take the zero-writing path.
        if (!Environment.Is64BitProcess || Volatile.Read(ref _punchHoleUnsupported) != 0)
            return false;
        while (LibC.Fallocate(_handle, LibC.FallocFlPunchHole | LibC.FallocFlKeepSize, offset, length) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == LibC.EIntr)
                continue;
            if (errno is LibC.EOpNotSupp or LibC.ENoSys)
            {
                Volatile.Write(ref _punchHoleUnsupported, 1);
                return false;
            }
            throw new BlockDeviceException(Name, offset, length, $"trim (fallocate punch hole) failed: {LibC.Describe(errno)}");
        }
        return true;
    }

    private void SyncData(long offset, long length)
    {
        while (LibC.Fdatasync(_handle) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.EIntr)
                throw new BlockDeviceException(Name, offset, length, $"fdatasync failed: {LibC.Describe(errno)}");
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadExactlyAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            for (int done = 0; done < buffer.Length;)
            {
                int n = await RandomAccess.ReadAsync(_handle, buffer[done..], offset + done, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                    throw new BlockDeviceException(Name, offset + done, buffer.Length - done, "read past the end of the file: the file is shorter than the device");
                done += n;
            }
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, buffer.Length, $"read failed: {e.Message}", e);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadDirectIoAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        // The pin is held across the I/O so that the address checked is the address the kernel gets.
        MemoryHandle pin = default;
        try
        {
            if (TryPinAligned(buffer, ref pin))
            {
                await ReadExactlyAsync(offset, buffer, cancellationToken).ConfigureAwait(false);
                return;
            }
            var bounce = AlignedBufferPool.Shared.Rent();
            try
            {
                for (int done = 0; done < buffer.Length;)
                {
                    int n = Math.Min(bounce.Length, buffer.Length - done);
                    await ReadExactlyAsync(offset + done, bounce.Memory[..n], cancellationToken).ConfigureAwait(false);
                    bounce.GetSpan()[..n].CopyTo(buffer.Span[done..]);
                    done += n;
                }
            }
            finally
            {
                AlignedBufferPool.Shared.Return(bounce);
            }
        }
        finally
        {
            pin.Dispose();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteExactlyAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        try
        {
            await RandomAccess.WriteAsync(_handle, buffer, offset, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (IsIoFailure(e))
        {
            throw new BlockDeviceException(Name, offset, buffer.Length, $"write failed: {e.Message}", e);
        }
        if (forceUnitAccess)
            SyncData(offset, buffer.Length);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteDirectIoAsync(long offset, ReadOnlyMemory<byte> buffer, bool forceUnitAccess, CancellationToken cancellationToken)
    {
        MemoryHandle pin = default;
        try
        {
            if (TryPinAligned(buffer, ref pin))
            {
                await WriteExactlyAsync(offset, buffer, forceUnitAccess, cancellationToken).ConfigureAwait(false);
                return;
            }
            var bounce = AlignedBufferPool.Shared.Rent();
            try
            {
                for (int done = 0; done < buffer.Length;)
                {
                    int n = Math.Min(bounce.Length, buffer.Length - done);
                    buffer.Span.Slice(done, n).CopyTo(bounce.GetSpan());
                    await WriteExactlyAsync(offset + done, bounce.Memory[..n], false, cancellationToken).ConfigureAwait(false);
                    done += n;
                }
            }
            finally
            {
                AlignedBufferPool.Shared.Return(bounce);
            }
            if (forceUnitAccess)
                SyncData(offset, buffer.Length);
        }
        finally
        {
            pin.Dispose();
        }
    }

    /// <summary>
    /// Pins <paramref name="buffer"/> into <paramref name="pin"/> and returns true when O_DIRECT can use it as it
    /// is: native memory (a <see cref="MemoryManager{T}"/>) at an aligned address. Managed arrays are never
    /// relied on to be aligned, and are not pinned here.
    /// </summary>
    private static unsafe bool TryPinAligned(ReadOnlyMemory<byte> buffer, ref MemoryHandle pin)
    {
        if (!MemoryMarshal.TryGetMemoryManager(buffer, out MemoryManager<byte>? _))
            return false;
        pin = buffer.Pin();
        return AlignedBuffer.IsAligned(pin.Pointer);
    }

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
            throw new NotSupportedException($"{Name} is open read-only.");
    }

    private static bool IsIoFailure(Exception e) => e is (IOException and not BlockDeviceException) or UnauthorizedAccessException;
}
