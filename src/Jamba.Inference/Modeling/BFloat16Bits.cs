using System.Runtime.CompilerServices;

namespace Jamba.Inference.Modeling;

/// <summary>Element access to raw fp32 or bf16 tensor memory for the hand-written CPU kernels (bf16 is the upper half of
/// an fp32; stores round to nearest even, as libtorch does).</summary>
internal static class BFloat16Bits
{
    /// <summary>Element <paramref name="i"/> of a bf16 (<paramref name="half"/>) or fp32 buffer, as fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Load(nint p, long i, bool half) =>
        half ? BitConverter.UInt32BitsToSingle((uint)((ushort*)p)[i] << 16) : ((float*)p)[i];

    /// <summary>Writes <paramref name="v"/> to element <paramref name="i"/>, rounded to bf16 when <paramref name="half"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void Store(nint p, long i, float v, bool half)
    {
        if (half) ((ushort*)p)[i] = ToBits(v);
        else ((float*)p)[i] = v;
    }

    /// <summary><paramref name="v"/> rounded to the nearest bf16 (ties to even), as fp32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Round(float v) => BitConverter.UInt32BitsToSingle((uint)ToBits(v) << 16);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ushort ToBits(float v)
    {
        uint bits = BitConverter.SingleToUInt32Bits(v);
        return float.IsNaN(v) ? (ushort)((bits >> 16) | 0x40) : (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
}
