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
