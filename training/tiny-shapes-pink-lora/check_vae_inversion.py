# How far decoder inversion gets on 64 training-style pink pictures (both colours read right), and what it costs at 1 thread.
# Run from the repository root.
import sys, time, numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, "training/tiny-shapes-pink-lora")
import common, data
text, unet, vae, scale = common.load_base()
rng = np.random.default_rng(1)
items=[common.pink_item(rng) for _ in range(64)]
imgs=np.stack([data.draw(it,(0,0)) for it in items])
x=torch.from_numpy(imgs).permute(0,3,1,2).float()/127.5-1
for p in vae.decoder.parameters(): p.requires_grad_(False)
with torch.no_grad(): lat=vae.encoder(x)[:, :4]
def score(z):
    with torch.no_grad(): out=vae.decoder(z)
    rec=((out.clamp(-1,1)+1)*127.5).permute(0,2,3,1).numpy().round().astype(np.uint8)
    ok=0
    for it,b in zip(items,rec):
        bg,col,sh=common.classify(b)
        ok += (bg==it["background"]) and (col==it["color"])
    return ok/len(items)
print("encoder latents: both colours right", score(lat))
t=time.time()
z=lat.clone().requires_grad_(True); opt=torch.optim.Adam([z],lr=0.05)
for i in range(200):
    opt.zero_grad(); loss=((vae.decoder(z)-x)**2).mean(); loss.backward(); opt.step()
    if i%50==49: print(i, loss.item(), "both right", score(z.detach()), "%.1fs"%(time.time()-t), flush=True)
