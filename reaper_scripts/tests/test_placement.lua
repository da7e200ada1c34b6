-- Where a returned stem goes on the timeline so that its offset lines up with the mix.

local function placement(match, selection_start, selection_end)
  local lib = T.lib()
  local window_start = math.max(selection_start, selection_end - lib.QUERY_SECONDS)
  return lib.placement(match, selection_start, selection_end, window_start)
end

T.test("placement_selection_within_the_query_window", function()
  -- 6 s selected: the window is the selection, so the item starts with it at offset_s.
  local p = placement({ offset_s = 2.37, duration_s = 16.0, loop = false }, 10.0, 16.0)
  T.eq(p.position, 10.0, "position")
  T.near(p.offset, 2.37, 1e-12, "take offset")
  T.near(p.length, 6.0, 1e-12, "the selection's length")
  T.eq(p.loop, false)
end)

T.test("placement_selection_longer_than_the_window", function()
  -- 12 s selected: the server heard only the last 8 s, which begin 4 s into the selection.
  local p = placement({ offset_s = 9.0, duration_s = 30.0, loop = false }, 20.0, 32.0)
  T.eq(p.position, 20.0)
  T.near(p.offset, 5.0, 1e-12, "the stem is 4 s earlier at the selection start")
  T.near(p.length, 12.0, 1e-12)
end)

T.test("placement_stem_that_starts_inside_the_selection", function()
  -- offset_s 1.5 with the window 4 s in: the stem's start falls 2.5 s after the selection start.
  local p = placement({ offset_s = 1.5, duration_s = 30.0, loop = false }, 20.0, 32.0)
  T.near(p.position, 22.5, 1e-12, "position")
  T.eq(p.offset, 0, "from the stem's beginning")
  T.near(p.length, 9.5, 1e-12, "to the selection's end")
end)

T.test("placement_stem_shorter_than_the_selection", function()
  local p = placement({ offset_s = 3.0, duration_s = 5.0, loop = false }, 0.0, 8.0)
  T.near(p.length, 2.0, 1e-12, "only what the stem has left")
end)

T.test("placement_loop_wraps_and_fills_the_selection", function()
  local p = placement({ offset_s = 0.64, duration_s = 1.92, loop = true }, 20.0, 32.0)
  T.eq(p.loop, true)
  T.eq(p.position, 20.0)
  T.near(p.offset, (0.64 - 4.0) % 1.92, 1e-12, "wrapped into the loop")
  T.ok(p.offset >= 0 and p.offset < 1.92, "inside the loop")
  T.near(p.length, 12.0, 1e-12, "the whole selection")
end)

-- Stretched stems (the result's stretch is the take's playrate): the stem moves on `stretch` of
-- its own seconds per second of the timeline, so offset_s still meets the window start.

T.test("placement_stretched_faster_keeps_offset_s_at_the_window_start", function()
  -- 12 s selected, the window 4 s in: at 1.25x the stem covers 5 s of itself before the window.
  local p = placement({ offset_s = 9.0, duration_s = 30.0, loop = false, stretch = 1.25 }, 20.0, 32.0)
  T.eq(p.rate, 1.25, "playrate")
  T.eq(p.position, 20.0)
  T.near(p.offset, 9.0 - 4 * 1.25, 1e-12, "take offset in the stem's seconds")
  T.near(p.offset + (24.0 - p.position) * p.rate, 9.0, 1e-12, "offset_s plays at the window start")
  T.near(p.length, 12.0, 1e-12, "the selection: the stem has 26 s left, 20.8 s at 1.25x")
end)

T.test("placement_stretched_slower_ends_with_the_stem", function()
  -- At 0.8x the take starts at 9 - 4 * 0.8 = 5.8 s; the 24.2 s left last 30.25 s, more than the
  -- selection. A short stem ends earlier: its length on the timeline is what is left of it / the rate.
  local p = placement({ offset_s = 9.0, duration_s = 30.0, loop = false, stretch = 0.8 }, 20.0, 32.0)
  T.near(p.offset, 9.0 - 4 * 0.8, 1e-12)
  T.near(p.length, 12.0, 1e-12)
  local short = placement({ offset_s = 3.0, duration_s = 7.0, loop = false, stretch = 0.8 }, 0.0, 8.0)
  T.near(short.offset, 3.0, 1e-12, "the window is the selection")
  T.near(short.length, 4.0 / 0.8, 1e-12, "the 4 s left last 5 s at 0.8x")
  local fast = placement({ offset_s = 3.0, duration_s = 7.0, loop = false, stretch = 1.25 }, 0.0, 8.0)
  T.near(fast.length, 4.0 / 1.25, 1e-12, "and 3.2 s at 1.25x")
end)

T.test("placement_stretched_stem_that_starts_inside_the_selection", function()
  -- offset_s 1.5 at 1.25x with the window 4 s in: the stem's start plays 1.2 s before the window.
  local p = placement({ offset_s = 1.5, duration_s = 30.0, loop = false, stretch = 1.25 }, 20.0, 32.0)
  T.near(p.position, 24.0 - 1.5 / 1.25, 1e-12, "position")
  T.eq(p.offset, 0, "from the stem's beginning")
  T.near(p.length, 32.0 - p.position, 1e-12, "to the selection's end")
end)

T.test("placement_stretched_loop_wraps_in_source_seconds", function()
  local p = placement({ offset_s = 0.64, duration_s = 1.92, loop = true, stretch = 0.8 }, 20.0, 32.0)
  T.eq(p.loop, true)
  T.eq(p.rate, 0.8)
  T.near(p.offset, (0.64 - 4.0 * 0.8) % 1.92, 1e-12, "wrapped into the loop, in the loop's own seconds")
  T.near(p.length, 12.0, 1e-12, "the whole selection, whatever the rate")
end)

T.test("placement_without_a_stretch_plays_at_the_stems_own_tempo", function()
  local lib = T.lib()
  for _, stretch in ipairs({ lib.json.null, false, 0, -1 }) do
    local p = placement({ offset_s = 9.0, duration_s = 30.0, loop = false, stretch = stretch }, 20.0, 32.0)
    T.eq(p.rate, 1, "rate for stretch " .. tostring(stretch))
    T.near(p.offset, 5.0, 1e-12)
  end
  T.eq(lib.playrate({}), 1, "a server that sends no stretch at all")
  T.eq(lib.pitch({ transpose = -3 }, true), -3)
  T.eq(lib.pitch({ transpose = -3 }, false), 0, "the setting is off")
  T.eq(lib.pitch({ transpose = lib.json.null }, true), 0, "no key known")
end)

T.test("describe_shows_tempo_key_stretch_and_transpose", function()
  local lib = T.lib()
  local null = lib.json.null
  local match = { tempo_bpm = 100.0, stretch = 1.24, key = "A minor", key_relation = "relative", transpose = 3 }
  T.eq(lib.describe(match, true), "100 BPM x1.24    A minor (relative, +3 st)")
  T.eq(lib.describe(match, false), "100 BPM x1.24    A minor (relative)", "no semitones when not transposed")
  T.eq(lib.describe({ tempo_bpm = 123.5, stretch = null, key = "F# major", key_relation = "clash", transpose = -5 },
                    true), "123.5 BPM    F# major (clash, -5 st)")
  T.eq(lib.describe({ tempo_bpm = null, stretch = null, key = null, key_relation = null, transpose = null }, true), "",
       "a drum one-shot")
  T.eq(lib.describe({}, true), "", "a server of the previous version")
  match.path = "/Samples/Bass/sub loop.wav"
  T.eq(lib.take_name(match, 2, 10, true), "sub loop.wav (2/10)  100 BPM x1.24  A minor (relative, +3 st)")
  T.eq(lib.take_name({ path = "/k/kick.wav" }, 1, 3, true), "kick.wav (1/3)", "nothing known: the name as before")
end)
