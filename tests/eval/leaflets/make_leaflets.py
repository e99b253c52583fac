"""Writes the patient-information leaflets of the second held-out set (issue 27) as small PDFs.

Run from the repository root: `python tests/eval/leaflets/make_leaflets.py`. The texts are ours (written for
this set, not copied from any clinic); the PDFs are committed beside this script so `kbchat eval` can be run
on them without it. Each leaflet is a list of pages, each page a list of paragraphs ("# " starts a heading).
A paragraph ending in "\\" continues on the next page mid-sentence, as leaflets laid out by hand do.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pymupdf

HERE = Path(__file__).resolve().parent
FONTS = {"en": "helv", "zh-TW": "china-t", "zh-CN": "china-s"}
_TOKEN = re.compile(r"[A-Za-z0-9%°/.,;:'()\-–+]+ ?|.", re.S)

LEAFLETS: dict[str, tuple[str, list[list[str]]]] = {
    # ---------------------------------------------------------------- English
    "en-dengue-prevention.pdf": ("en", [[
        "# Dengue Fever: Protecting Yourself from Mosquito Bites",
        "Dengue fever is a viral infection spread by the bites of Aedes mosquitoes (Aedes aegypti and Aedes "
        "albopictus). It does not pass directly from one person to another.",
        "# When do these mosquitoes bite?",
        "Aedes mosquitoes bite mainly during the daytime. Biting peaks in the two hours after sunrise and in "
        "the late afternoon, several hours before sunset. They often bite around the ankles and lower legs.",
        "# Symptoms",
        "Symptoms usually begin 3 to 14 days after an infected bite: a sudden high fever, severe headache, pain "
        "behind the eyes, muscle and joint pain, nausea and a skin rash.",
        "# Warning signs",
        "Go to the emergency department at once if you have severe abdominal pain, repeated vomiting, bleeding "
        "from the gums or nose, black stools, or feel very drowsy or restless, especially in the first days "
        "after the fever goes down.",
    ], [
        "# Preventing bites",
        "Use an insect repellent containing DEET, picaridin or IR3535 on exposed skin and reapply it as the "
        "label says. Wear light-coloured long sleeves and long trousers. Use screens on windows and doors.",
        "# Removing breeding sites",
        "Once a week, empty flower-pot saucers, vases, buckets and old tyres, and turn over anything that can "
        "hold water. Mosquito eggs can survive on the dry wall of a container for up to a year.",
        "# If you have dengue",
        "Take paracetamol (acetaminophen) for fever and pain. Do not take aspirin or ibuprofen, which can "
        "increase the risk of bleeding. Drink plenty of fluids, rest, and sleep under a bed net so that "
        "mosquitoes do not bite you and carry the virus to your family.",
    ]]),
    "en-colonoscopy-preparation.pdf": ("en", [[
        "# Preparing for Your Colonoscopy",
        "A colonoscopy lets the doctor look at the lining of your large bowel (colon) with a thin, flexible "
        "camera. The test itself takes about 30 to 60 minutes.",
        "# Three days before",
        "Stop eating high-fibre foods: nuts, seeds, popcorn, corn, whole-grain bread, and fruit or vegetables "
        "with skins or pips.",
        "# The day before",
        "Have clear liquids only: water, clear broth, apple juice, plain tea or black coffee without milk, and "
        "clear sports drinks. Avoid red or purple drinks because they can look like blood in the bowel.",
        "# Bowel preparation",
        "Drink the first half of the laxative solution at 6 pm on the evening before. Drink the second half "
        "5 hours before your appointment and finish it at least 2 hours before the procedure.",
        "# Medicines",
        "If you take blood thinners such as warfarin, clopidogrel or apixaban, tell\\",
    ], [
        "your doctor at least seven days before the procedure; do not stop them on your own. Diabetes "
        "medicines may need a lower dose while you are on clear liquids.",
        "# After the test",
        "You will be given sedation, so you must not drive, operate machinery or sign legal documents for 24 "
        "hours. Bring an adult who can take you home.",
        "Mild bloating and passing gas are normal for a few hours. Call us if you have severe abdominal pain, "
        "a fever over 38°C, or more than a tablespoon of blood in your stool.",
    ]]),
    "en-shingles-vaccine.pdf": ("en", [[
        "# Shingles Vaccine (Recombinant Zoster Vaccine)",
        "Shingles is a painful, blistering rash caused by the chickenpox virus waking up again years later. "
        "About one in three people will get shingles in their lifetime.",
        "# Who should get it",
        "The vaccine is recommended for adults aged 50 years and older, and for adults 19 years and older "
        "whose immune system is weakened by disease or treatment. You should get it even if you have already "
        "had shingles.",
        "# How many doses",
        "Two doses are given into the muscle of the upper arm, 2 to 6 months apart. The two doses together "
        "are more than 90% effective at preventing shingles.",
        "# Side effects",
        "A sore arm with redness and swelling where the shot was given is common and usually goes away in "
        "2 to 3 days. Some people feel tired, have muscle pain, a headache, shivering or fever for a day or "
        "two. You can take paracetamol if needed.",
        "Do not get the vaccine while you have an active shingles rash or if you are pregnant.",
    ]]),
    "en-home-blood-pressure.pdf": ("en", [[
        "# Measuring Your Blood Pressure at Home",
        "Home readings help your doctor see your usual blood pressure, away from the stress of the clinic.",
        "# Getting ready",
        "Do not drink coffee or tea, smoke or exercise in the 30 minutes before measuring. Empty your bladder "
        "first. Sit quietly for 5 minutes with your back supported and your feet flat on the floor.",
        "# The cuff",
        "Put the cuff on your bare upper arm at heart level. The inflatable part of the cuff should go around "
        "at least 80% of your arm; a cuff that is too small gives readings that are too high.",
        "# When to measure",
        "Take two readings one minute apart every morning, before breakfast and before your medicines, and "
        "every evening, for 7 days before your clinic visit. Write down every reading.",
        "# What the numbers mean",
        "For most adults, the average of home readings should be below 135/85 mmHg. If a reading is above "
        "180/120 mmHg and you have chest pain, shortness of breath, weakness or trouble speaking, call an "
        "ambulance.",
    ]]),
    "en-diabetic-foot-care.pdf": ("en", [[
        "# Foot Care for People with Diabetes",
        "Diabetes can reduce the feeling in your feet and the blood flow to them, so small injuries can turn "
        "into serious ulcers without you noticing.",
        "# Every day",
        "Check both feet every day for cuts, blisters, red areas, swelling and nail problems. Use a mirror to "
        "see the soles, or ask a family member to look.",
        "Wash your feet daily in lukewarm water. Test the water with your elbow first: it should be below "
        "37°C. Dry well, especially between the toes. Use moisturising cream on the tops and soles but not "
        "between the toes.",
        "# Nails and shoes",
        "Cut toenails straight across and file sharp edges. Never walk barefoot, not even indoors. Check "
        "inside your shoes for stones before putting them on, and break in new shoes slowly.",
        "# When to get help",
        "If a cut, blister or sore has not started to heal within 2 days, or the skin turns red, hot or black, "
        "contact the clinic the same day. Have your feet checked by a podiatrist at least once a year.",
    ]]),
    # ------------------------------------------------------ Traditional Chinese
    "zhtw-flu-vaccine.pdf": ("zh-TW", [[
        "# 流感疫苗接種須知",
        "流感病毒每年都可能變異，因此流感疫苗需要每年接種一次。接種後約需兩週產生保護力，保護效果可維持約一年。",
        "# 哪些人優先接種",
        "滿6個月以上幼兒、65歲以上長者、孕婦、慢性病患者及醫護人員為優先接種對象。未滿9歲兒童若是第一次接種，需接種兩劑，兩劑間隔四週以上。",
        "# 接種後可能的反應",
        "常見副作用為注射部位疼痛、紅腫，通常於1-2天內消失；少數人可能出現發燒、頭痛、肌肉痠痛或疲倦等全身性反應，一般約1-2天會恢復。",
        "接種後請在接種單位休息觀察30分鐘，確定沒有不適再離開。",
        "若出現持續高燒超過48小時、呼吸困難、全身紅疹或意識改變等嚴重反應，應儘速就醫並告知醫師接種史。",
        "# 不適合接種的人",
        "已知對疫苗成分有嚴重過敏反應者、過去接種曾發生嚴重不良反應者，不予接種；發燒或正患有急性疾病者，宜等病情穩定後再接種。",
    ]]),
    "zhtw-gastroscopy.pdf": ("zh-TW", [[
        "# 上消化道內視鏡（胃鏡）檢查注意事項",
        "# 檢查前",
        "檢查前一天晚上10點以後禁食，包括開水、牛奶及口香糖；檢查當天早上請勿吃早餐。",
        "高血壓及心臟病藥物可在檢查當天早上6點以少量開水（約30cc）服用；降血糖藥物及胰島素當天早上暫停使用，帶到醫院檢查後再使用。",
        "選擇無痛（麻醉）胃鏡者，須有家屬陪同，檢查後當天不可開車或騎機車。",
        "# 檢查中",
        "檢查時間約5至10分鐘。醫師會在喉嚨噴麻醉藥，檢查時請咬住咬口器，用鼻子吸氣、嘴巴吐氣，口水讓它自然流出。",
        "# 檢查後",
        "檢查後約1小時，喉嚨麻藥退了以後，先喝一小口溫開水，沒有嗆咳再開始進食。",
        "若有做切片，當天宜吃溫涼、軟質的食物，避免過熱、辛辣及酒類。",
        "如出現解黑便、吐血或劇烈腹痛，請立即返診或至急診就醫。",
    ]]),
    "zhtw-asthma-inhaler.pdf": ("zh-TW", [[
        "# 定量噴霧吸入器使用方法",
        "正確使用吸入器，藥物才能到達肺部。請在每次回診時帶吸入器，讓護理師確認使用方式。",
        "# 使用步驟",
        "一、打開蓋子，上下用力搖晃吸入器約5秒。第一次使用或超過一週沒有使用時，先朝空中試噴一至兩下。",
        "二、先把肺裡的氣慢慢吐乾淨，再用嘴唇含緊吸嘴。",
        "三、開始慢慢深吸氣的同時，按壓吸入器一下，持續吸氣3至5秒。",
        "四、移開吸入器，閉氣10秒（或盡量久），再慢慢吐氣。如果醫師開的是兩下，間隔約1分鐘再重複步驟一到四。",
    ], [
        "# 使用類固醇吸入劑之後",
        "使用含類固醇的吸入劑後，請用清水漱口並吐掉，不要吞下，以減少聲音沙啞及口腔念珠菌感染。",
        "# 清潔與保存",
        "吸嘴每週用溫水沖洗一次，自然風乾後再裝回。吸入器請放在陰涼處，不可放在車內或靠近火源。",
        "# 什麼時候要回診",
        "如果緩解型（急救用）吸入劑一週需要使用超過兩天，或夜裡因咳嗽、喘而醒來，表示氣喘控制不佳，請提早回診調整用藥。",
    ]]),
    "zhtw-wound-care.pdf": ("zh-TW", [[
        "# 縫合傷口居家照護",
        "# 保持乾燥",
        "傷口縫合後24至48小時內請保持乾燥，之後可以淋浴，但洗完要立即擦乾；拆線前不可泡澡、泡溫泉或游泳。",
        "# 換藥方式",
        "每天換藥一次。換藥前先洗手，以生理食鹽水棉棒由傷口中心往外環狀清潔，再覆蓋無菌紗布。紗布若弄濕或弄髒要立即更換。",
        "# 拆線時間",
        "一般臉部傷口約5至7天拆線，頭皮約7至10天，手腳約10至14天；跨過關節的傷口可能需要14天以上。",
        "# 何時需要回診",
        "傷口出現紅、腫、熱、痛越來越厲害，流出黃綠色膿液或有異味，或發燒超過38度，請儘速回診。",
        "# 減少疤痕",
        "結痂會自然脫落，請勿自行摳除。拆線後可使用矽膠片或矽膠凝膠，並避免日曬至少6個月，以免疤痕顏色變深。",
    ]]),
    "zhtw-enterovirus-care.pdf": ("zh-TW", [[
        "# 腸病毒居家照護",
        "腸病毒好發於5歲以下幼兒，主要經由接觸患者的口鼻分泌物、糞便或被污染的物品傳染。潛伏期約2至10天。",
        "# 照顧生病的孩子",
        "孩子口腔有潰瘍時，可給予冰涼、軟質的食物，例如布丁、豆花、冰牛奶，避免太燙或太酸的食物。要注意水分攝取，留意尿量是否減少。",
        "生病的孩子應在家休息，至少7天不要上學或去安親班，以免傳染給其他孩子。",
        "# 洗手最重要",
        "用肥皂和清水濕、搓、沖、捧、擦，搓洗至少20秒。酒精性乾洗手對腸病毒效果不佳。環境可用稀釋漂白水（500ppm）擦拭消毒。",
        "# 重症前兆",
        "發病後一週內如出現嗜睡、意識不清、活力不佳、手腳無力、肌抽躍（無故驚嚇或突然全身肌肉收縮）、持續嘔吐、呼吸急促或心跳加快，請立即送到大醫院就醫。",
    ]]),
    # ----------------------------------------------------- Simplified Chinese
    "zhcn-flu-vaccine.pdf": ("zh-CN", [[
        "# 流感疫苗接种须知",
        "流感病毒每年都可能变异，因此流感疫苗需要每年接种一次。接种后约需两周产生保护力，保护效果可维持约一年。",
        "# 哪些人优先接种",
        "满6个月以上幼儿、65岁以上老人、孕妇、慢性病患者及医护人员为优先接种对象。未满9岁儿童若是第一次接种，需接种两剂，两剂间隔四周以上。",
        "# 接种后可能的反应",
        "常见副作用为注射部位疼痛、红肿，通常于1-2天内消失；少数人可能出现发烧、头痛、肌肉酸痛或疲倦等全身性反应，一般约1-2天会恢复。",
        "接种后请在接种单位留观30分钟，确定没有不适再离开。",
        "若出现持续高烧超过48小时、呼吸困难、全身皮疹或意识改变等严重反应，应尽快就医并告知医生接种史。",
        "# 不适合接种的人",
        "已知对疫苗成分有严重过敏反应者、过去接种曾发生严重不良反应者，不予接种；发烧或正患有急性疾病者，宜等病情稳定后再接种。",
    ]]),
    "zhcn-gout-diet.pdf": ("zh-CN", [[
        "# 痛风患者饮食指导",
        "痛风是血液中尿酸过高、尿酸盐结晶沉积在关节引起的炎症。饮食控制配合药物，可以减少发作。",
        "# 多喝水",
        "每天饮水2000毫升以上，使尿量保持在每天2000毫升左右，帮助尿酸从肾脏排出。",
        "# 少吃高嘌呤食物",
        "避免动物内脏（肝、肾、脑）、沙丁鱼、凤尾鱼、贝类，以及浓肉汤和火锅汤。肉类每天不超过100克。",
        "限制饮酒，尤其是啤酒和黄酒；含果糖的甜饮料和果汁也会升高尿酸。",
        "低脂牛奶、鸡蛋和豆腐可以作为蛋白质来源。",
        "# 急性发作时",
        "卧床休息，抬高患肢；可以冰敷，每次20分钟，不要热敷或按摩关节。按医嘱服药，不要自行停用降尿酸药。",
        "# 控制目标",
        "血尿酸一般应控制在360微摩尔/升（6毫克/分升）以下；有痛风石的患者应低于300微摩尔/升。",
    ]]),
    "zhcn-cataract-surgery.pdf": ("zh-CN", [[
        "# 白内障手术前后须知",
        "白内障是眼内晶状体变混浊，使视力模糊。手术是把混浊的晶状体取出，换上人工晶体。",
        "# 手术前",
        "手术前3天开始滴抗生素眼药水，每天4次。手术当天可以正常吃早饭，洗头洗脸，不要化妆，不要戴首饰。",
        "手术采用局部麻醉，时间约15至20分钟，手术中请保持头部不动，眼睛看着灯光。",
        "# 手术后",
        "术后一个月内不要揉眼睛，洗头洗脸时不要让脏水进入眼睛，洗头时请仰头。",
        "睡觉时请戴眼罩保护手术眼，避免压到眼睛。一个月内避免提重物（超过5公斤）、弯腰低头和剧烈运动。",
    ], [
        "# 复查时间",
        "请在术后第二天、第一周和第一个月回医院复查，以后按医生要求定期检查。",
        "# 滴眼药水的方法",
        "滴药前先洗手，头向后仰，轻轻拉开下眼睑，把药水滴入，闭眼1至2分钟。两种眼药水之间要间隔5分钟以上。",
        "# 需要立即就诊的情况",
        "如眼睛突然剧烈疼痛、视力明显下降、眼睛很红或分泌物增多，并伴有头痛、恶心，请立即到医院就诊。",
    ]]),
    "zhcn-low-salt-diet.pdf": ("zh-CN", [[
        "# 高血压患者低盐饮食",
        "吃得太咸会使血压升高。减少食盐，可以帮助控制血压，并减轻降压药的负担。",
        "# 每天吃多少盐",
        "成人每天食盐不超过5克，大约是一个啤酒瓶盖（去掉胶垫）平装的量。使用限盐勺可以帮助掌握用量。",
        "# 看不见的盐",
        "酱油、味精、蚝油、豆瓣酱也含盐：10毫升酱油约含1.5克盐。咸菜、腊肉、香肠、方便面和挂面含盐也很多。",
        "购买包装食品时请看营养成分表，钠含量超过每100克600毫克的食品属于高盐食品。",
        "# 烹调小技巧",
        "菜快出锅时再放盐；多用醋、柠檬、葱、姜、蒜调味。多吃新鲜蔬菜和水果，它们含钾，有助于降低血压（肾功能不好的患者请先问医生）。",
    ]]),
}


def _wrap(text: str, font: pymupdf.Font, size: float, width: float) -> list[str]:
    """Lines of at most `width` points: Latin words stay whole, CJK breaks between characters."""
    lines, line = [], ""
    for tok in _TOKEN.findall(text):
        if line and font.text_length((line + tok).rstrip(), fontsize=size) > width:
            lines.append(line.rstrip())
            line = tok.lstrip()
        else:
            line += tok
    if line.strip():
        lines.append(line.rstrip())
    return lines


def write_leaflet(path: Path, lang: str, pages: list[list[str]]) -> None:
    """One leaflet: A5-like pages of wrapped paragraphs, headings in a larger size."""
    fontname = FONTS[lang]
    font = pymupdf.Font(fontname)
    doc = pymupdf.open()
    for paragraphs in pages:
        page = doc.new_page(width=420, height=595)
        y = 50.0
        for para in paragraphs:
            heading = para.startswith("# ")
            text = para[2:] if heading else para.rstrip("\\")
            size = 14 if heading else 10.5
            if heading and y > 50:
                y += 6
            for line in _wrap(text, font, size, 420 - 2 * 45):
                page.insert_text((45, y + size), line, fontname=fontname, fontsize=size)
                y += size * 1.45
            y += 5
        page.insert_text((45, 570), f"Clinic leaflet · {path.stem} · {doc.page_count}", fontname="helv",
                         fontsize=7)
    doc.set_metadata({"title": pages[0][0][2:], "author": "kbchat eval"})
    doc.save(path, garbage=3, deflate=True)


def main() -> int:
    for name, (lang, pages) in LEAFLETS.items():
        write_leaflet(HERE / name, lang, pages)
    print(f"wrote {len(LEAFLETS)} leaflets to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
