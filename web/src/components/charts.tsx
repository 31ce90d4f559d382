// Charts on uPlot (small, fast canvas charts): a stacked bar chart of counts per interval, and
// a line chart of samples over time. Both redraw when their data changes and follow the width
// of their box.

import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface StackSeries {
  label: string;
  color: string;
  values: number[];
}

function useWidth(box: React.RefObject<HTMLDivElement | null>, onWidth: (w: number) => void) {
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(() => onWidth(el.clientWidth));
    observer.observe(el);
    return () => observer.disconnect();
  }, [box, onWidth]);
}

/** Bars per interval (`times` in seconds), the series stacked in the order given (first at
 *  the bottom). */
export function StackedBars({ times, series, height = 160, testId }: { times: number[]; series: StackSeries[]; height?: number; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    // Cumulative sums, drawn tallest first so each lower band shows over the one above it.
    const stacked: number[][] = [];
    let running = times.map(() => 0);
    for (const s of series) {
      running = running.map((v, i) => v + (s.values[i] ?? 0));
      stacked.push(running);
    }
    const ordered = [...series].reverse();
    const orderedStacks = [...stacked].reverse();
    const bars = uPlot.paths.bars!({ size: [0.8, 40] });
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { size: 50 }],
      series: [
        {},
        ...ordered.map((s) => ({
          label: s.label,
          stroke: s.color,
          fill: s.color,
          paths: bars,
          points: { show: false },
          // The legend shows the band's own count, not the running sum.
          value: (_u: uPlot, _v: number | null, _s: number, idx: number | null) =>
            idx === null ? '–' : String(s.values[idx] ?? 0),
        })),
      ],
    };
    const data = [times, ...orderedStacks] as uPlot.AlignedData;
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, series, height]);
  useWidth(box, (w) => plot.current?.setSize({ width: w, height }));
  return <div ref={box} className="chart" data-testid={testId} />;
}

export interface LineSeries {
  label: string;
  color: string;
  values: (number | null)[];
}

/** Lines over time (`times` in seconds); `unit` names the y axis' values. */
export function LineChart({ times, series, height = 160, unit = '', max, testId }: { times: number[]; series: LineSeries[]; height?: number; unit?: string; max?: number; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: el.clientWidth || 600,
      height,
      scales: { x: { time: true }, y: max === undefined ? {} : { range: [0, max] } },
      axes: [{}, { size: 60, values: (_u, ticks) => ticks.map((t) => `${t}${unit}`) }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, spanGaps: false }))],
    };
    const data = [times, ...series.map((s) => s.values)] as uPlot.AlignedData;
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [times, series, height, unit, max]);
  useWidth(box, (w) => plot.current?.setSize({ width: w, height }));
  return <div ref={box} className="chart" data-testid={testId} />;
}
